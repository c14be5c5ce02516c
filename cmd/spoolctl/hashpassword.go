package main

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
)

// hashPasswordCmd makes the bcrypt hash that an SMTP listener's or the web
// console's users[].password_hash (or password_hash_file) holds, so no plain password is ever written into the
// config. It needs no daemon.
func (a *app) hashPasswordCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash-password",
		Short: "Print the bcrypt hash of an SMTP or web console user's password (read from stdin) for the config",
		Long: "hash-password reads a password (on a terminal twice, without echo; else the first line of stdin)\n" +
			"and prints its bcrypt hash for smtp_listeners[].users[].password_hash,\n" +
			"http.console_users[].password_hash, or a password_hash_file.\n\n" +
			"  spoolctl hash-password > /etc/spoold/mfd.hash && chmod 600 /etc/spoold/mfd.hash",
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			pw, err := a.readPassword()
			if err != nil {
				return err
			}
			if pw == "" {
				return usagef("empty password: type the password, or pipe it on stdin")
			}
			if len(pw) > 72 {
				return usagef("password longer than 72 bytes: bcrypt would ignore the rest")
			}
			hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
			if err != nil {
				return fmt.Errorf("hashing the password: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(hash))
			return nil
		}),
	}
}

// readPassword reads the password: on a terminal twice without echo (a
// typo would otherwise lock the scanner out with a hash nobody knows), from
// a pipe once.
func (a *app) readPassword() (string, error) {
	if a.d.StdinIsTTY() && a.d.ReadPassword != nil {
		ask := func(prompt string) (string, error) {
			fmt.Fprint(a.d.Stderr, prompt)
			b, err := a.d.ReadPassword()
			fmt.Fprintln(a.d.Stderr)
			if err != nil {
				return "", fmt.Errorf("reading the password: %w", err)
			}
			return string(b), nil
		}
		pw, err := ask("Password: ")
		if err != nil || pw == "" {
			return pw, err
		}
		again, err := ask("Same password again: ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", fmt.Errorf("the two passwords differ: nothing printed; run spoolctl hash-password again")
		}
		return pw, nil
	}
	line, err := bufio.NewReader(a.d.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", usagef("no password on stdin")
	}
	return strings.TrimRight(line, "\r\n"), nil
}
