package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
)

// keysCmd shows and rotates the key that seals the OAuth tokens spoold
// stores in spool.db, and generates keys for the config's secrets.key.
func (a *app) keysCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Show the keys sealing the stored OAuth tokens (IDs and sources, never the keys)",
		Long: "keys lists the keys the running spoold holds for the OAuth tokens it stores in spool.db:\n" +
			"the primary key (secrets.key), which seals every record, and any older key still loaded\n" +
			"(secrets.previous_keys, or the old key during a rotation). Needs the admin group.",
		Args: cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = request(a, &asJSON, func(ctx context.Context, c *wire.Client) (wire.KeysInfo, error) { return c.Keys(ctx) },
		func(w io.Writer, ki wire.KeysInfo) {
			tw := newTable(w)
			fmt.Fprintln(tw, "KEY ID\tROLE\tSOURCE")
			for _, k := range ki.Keys {
				role := "previous (opens records only)"
				if k.Primary {
					role = "primary (seals)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", k.ID, role, k.Source)
			}
			tw.Flush()
		}, nil)
	cmd.AddCommand(a.keysRotateCmd(), a.keysGenerateCmd())
	return cmd
}

func (a *app) keysRotateCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Re-seal every stored token under a new key while spoold runs",
		Long: "rotate makes the running spoold write a new key next to its key file (KEYFILE.new), seal\n" +
			"new records with it, re-seal every stored token, and only then replace the key file with\n" +
			"it. If spoold is killed midway, every record still opens with the old or the new key and\n" +
			"the next start finishes the rotation. Back up the new key file afterwards; backups of\n" +
			"spool.db taken before need the old key, so keep it with them if you keep them.\n" +
			"A key from a systemd credential or an environment variable is rotated by its owner: set\n" +
			"the new key as secrets.key, list the old one under secrets.previous_keys, restart.",
		Args: cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = request(a, &asJSON, func(ctx context.Context, c *wire.Client) (wire.KeysRotateResponse, error) { return c.RotateKeys(ctx) },
		func(w io.Writer, r wire.KeysRotateResponse) {
			fmt.Fprintf(w, "rotated: key %s replaced key %s in %s; %d stored token(s) re-sealed\n", r.NewKeyID, r.OldKeyID, r.KeyFile, len(r.Resealed))
			fmt.Fprintf(w, "back up %s now: the stored tokens cannot be read without it\n", r.KeyFile)
		}, nil)
	return cmd
}

func (a *app) keysGenerateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate [FILE]",
		Short: "Print a new random key, or write it to FILE (mode 0600, never overwritten)",
		Long: "generate makes a new 256-bit key for secrets.key: printed (base64) for a systemd\n" +
			"credential (systemd-creds encrypt) or an environment variable, or written to FILE with\n" +
			"mode 0600. An existing FILE is never overwritten: it may be the key your tokens need.",
		Args: cobra.MaximumNArgs(1),
	}
	cmd.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		text, err := seal.GenerateText(nil)
		if err != nil {
			return err
		}
		if len(args) == 0 {
			_, err := cmd.OutOrStdout().Write(text)
			return err
		}
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists: not overwriting a key (tokens sealed with it would be lost); choose another name", args[0])
		}
		if err != nil {
			return fmt.Errorf("creating the key file: %w", err)
		}
		if _, err := f.Write(text); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", args[0], err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", args[0], err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", args[0], err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "wrote a new key to %s (mode 0600); back it up separately from spoold's data\n", args[0])
		return nil
	})
	return cmd
}
