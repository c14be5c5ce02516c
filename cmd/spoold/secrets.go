package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spoold/spoold/auth"
	"github.com/spoold/spoold/auth/seal"
	"github.com/spoold/spoold/cmd/spoold/adminapi"
	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/configs"
	"github.com/spoold/spoold/spool"
)

// openSecrets loads the key that seals the stored OAuth tokens and brings
// every token record under it (sealing plaintext records of an older
// version, re-sealing those of a previous key, finishing an interrupted
// rotation). When plaintext was sealed, spool.db is compacted into a new
// file: bbolt leaves overwritten values in free pages, and the point is
// that no copy of spool.db carries a token. Records the key does not open
// stop the start with an error naming their accounts.
func (d *daemon) openSecrets(ctx context.Context, p *plan, spoolOpts spool.Options) error {
	configured := func(account string) bool {
		return slices.ContainsFunc(p.oauth, func(a auth.AccountConfig) bool { return a.Name == account })
	}
	// The compaction must happen even if spoold dies between sealing and
	// compacting: a marker, durable before the first plaintext record is
	// sealed, makes the next start compact.
	marker := filepath.Join(p.cfg.DataDir, scrubMarker)
	scrub := false
	if p.backend.kind != configs.SpoolPostgres {
		if _, err := os.Stat(marker); err == nil {
			scrub = true
		} else if plain, err := plaintextTokens(ctx, d.spool); err != nil {
			return fmt.Errorf("secrets: %w", err)
		} else if plain {
			if err := writeMarker(marker); err != nil {
				return fmt.Errorf("secrets: %w", err)
			}
			scrub = true
		}
	}
	v, res, err := seal.OpenVault(ctx, p.secrets, d.spool, auth.TokenKey, seal.VaultOptions{Logger: d.log, Required: configured, Shared: p.backend.kind == configs.SpoolPostgres})
	if err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	d.vault = v
	log := d.log.With("component", "secrets")
	src := v.Source()
	attrs := []any{"key", src.String(), "key_id", v.Keyring().Primary().ID()}
	if res.Created {
		log.Warn("created a new key for the stored tokens: back it up separately from the data directory", attrs...)
	}
	if src.Kind == seal.KindFile && inDir(src.Name, p.cfg.DataDir) {
		log.Info("the key sealing stored tokens is in the data directory: it protects copies of spool.db, not copies of the whole data directory; on a server set secrets.key to a file elsewhere or a systemd credential", attrs...)
	} else {
		log.Info("stored tokens are sealed", attrs...)
	}
	if res.FinishedRotation {
		log.Info("finished the key rotation an earlier run started: back up the new key", attrs...)
	}
	if len(res.Resealed) > 0 {
		log.Info("re-sealed stored tokens with the current key; keys under secrets.previous_keys are no longer needed for them", "accounts", strings.Join(res.Resealed, ","))
	}
	if len(res.Sealed) == 0 && !scrub {
		return nil
	}
	if p.backend.kind == configs.SpoolPostgres {
		// No file of this node's to compact: PostgreSQL's (auto)vacuum
		// reclaims the old row versions.
		log.Info("sealed stored tokens that were kept in plaintext; run VACUUM on the spool's database so that no old row version keeps them", "accounts", strings.Join(res.Sealed, ","))
		return nil
	}
	if len(res.Sealed) > 0 {
		log.Info("sealed stored tokens that were kept in plaintext; compacting spool.db so that no copy of the old records remains in it", "accounts", strings.Join(res.Sealed, ","))
	} else {
		log.Info("compacting spool.db: an earlier start sealed plaintext tokens and stopped before compacting it")
	}
	if err := d.spool.Close(); err != nil {
		return fmt.Errorf("secrets: closing the spool to compact it: %w", err)
	}
	d.spool = nil
	if err := spool.Compact(p.cfg.DataDir); err != nil {
		return fmt.Errorf("secrets: %w (the tokens are sealed; their plaintext may remain in unused pages of spool.db until compacted)", err)
	}
	sp, err := spool.Open(p.cfg.DataDir, spoolOpts)
	if err != nil {
		return err
	}
	d.spool = sp
	v.SetRecords(d.spool)
	if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("secrets: removing %s after compacting spool.db: %w", marker, err)
	}
	return nil
}

// scrubMarker, in the data directory, says spool.db still has to be
// compacted after plaintext tokens were sealed.
const scrubMarker = "spool.db.scrub"

// plaintextTokens reports whether any stored token record is not sealed.
func plaintextTokens(ctx context.Context, recs seal.Records) (bool, error) {
	accts, err := recs.AccountsWith(ctx, auth.TokenKey)
	if err != nil {
		return false, fmt.Errorf("listing the stored tokens: %w", err)
	}
	plain := false
	for _, a := range accts {
		err := recs.AccountUpdate(ctx, a, auth.TokenKey, func(old []byte) ([]byte, error) {
			plain = plain || (old != nil && !seal.IsSealed(old))
			return nil, nil // read only
		})
		if err != nil {
			return false, fmt.Errorf("reading the stored token of %s: %w", a, err)
		}
	}
	return plain, nil
}

// writeMarker creates path durably (the file and its directory entry).
func writeMarker(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString("spool.db holds freed pages with plaintext tokens: spoold compacts it at start\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// inDir reports whether path lies inside dir.
func inDir(path, dir string) bool {
	ap, err1 := filepath.Abs(path)
	ad, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(ad, ap)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// Keys implements adminapi.KeyControl: the loaded keys, never their bytes.
func (i daemonInfo) Keys() wire.KeysInfo {
	var ki wire.KeysInfo
	primary := i.d.vault.Keyring().Primary().ID()
	for _, k := range i.d.vault.Keyring().Keys() {
		ki.Keys = append(ki.Keys, wire.KeyInfo{ID: k.ID(), Source: k.Source, Primary: k.ID() == primary})
	}
	return ki
}

// RotateKeys implements adminapi.KeyControl (spoolctl keys rotate).
func (i daemonInfo) RotateKeys(ctx context.Context) (wire.KeysRotateResponse, error) {
	// The rotation outlives a client that hangs up: stopping halfway is
	// safe, but finishing is what the admin asked for.
	res, err := i.d.vault.Rotate(context.WithoutCancel(ctx))
	out := wire.KeysRotateResponse{OldKeyID: res.OldKeyID, NewKeyID: res.NewKeyID, KeyFile: res.KeyFile, Resealed: res.Resealed}
	if err != nil {
		return out, fmt.Errorf("rotating the key: %w", err)
	}
	if out.Resealed == nil {
		out.Resealed = []string{}
	}
	return out, nil
}

// startAuditPruner drops audit entries older than retention, hourly.
func (d *daemon) startAuditPruner(retention time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	d.auditCancel, d.auditDone = cancel, make(chan struct{})
	go func() {
		defer close(d.auditDone)
		adminapi.RunAuditPruner(ctx, d.spool, retention, time.Hour, time.Now, d.log)
	}()
}

// forgetStoredTokens deletes the token records of accounts from the spool
// of a stopped daemon (spoold -forget-tokens): the way out when no key opens
// them and the grants are given up for a new sign-in.
func forgetStoredTokens(p *plan, accounts []string, stdout io.Writer) error {
	sp, err := openSpool(context.Background(), p, p.spool, slog.Default())
	if err != nil {
		return err
	}
	defer sp.Close()
	for _, a := range accounts {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		_, ok, err := sp.AccountGet(context.Background(), a, auth.TokenKey)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintf(stdout, "%s: no stored token\n", a)
			continue
		}
		if err := sp.AccountDelete(context.Background(), a, auth.TokenKey); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: stored token deleted; after starting spoold run `spoolctl auth login %s`\n", a, a)
	}
	return nil
}
