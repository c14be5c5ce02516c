// Command spoold is the spoold daemon: it accepts mail from office devices
// (SMTP submission and a scan hot folder), keeps it in a durable spool and
// delivers it upstream with OAuth2. Without -config it runs the embedded
// default configuration (see configs/default.yaml).
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
