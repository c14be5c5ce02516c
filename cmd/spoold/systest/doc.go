// Package systest is spoold's system-level crash and fault suite. Its tests
// build the real spoold and spoolctl binaries, run them against generated
// configs in temporary directories, drive them with real clients (go-smtp,
// Postfix's smtp-source and smtp-sink, swaks) and in-process upstream and
// OAuth2 fakes, and assert what an admin would check: every acknowledged
// message arrives upstream, the spool stays consistent after SIGKILL, faults
// end in the states DESIGN.md section 5 promises, and secrets never reach
// logs or CLI output.
//
// The package has no non-test code beyond this comment; the suite is skipped
// with -short. A soak run of the kill loop:
//
//	go test ./cmd/spoold/systest -run TestKill9Loop -systest.kills=500 -timeout 2h
package systest
