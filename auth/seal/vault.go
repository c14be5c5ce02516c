package seal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"github.com/spoold/spoold/configs/field"
)

// Options is the secrets section of the config: where the key is and which
// older keys still open records.
type Options struct {
	Key          string   // source of the key new records are sealed with
	PreviousKeys []string // sources of keys that still open records
}

// DefaultKeyFile is the key file's name in the data directory when
// secrets.key is not set.
const DefaultKeyFile = "spoold.key"

// WithDefaults fills the key: a file in dataDir, created on first start.
func (o Options) WithDefaults(dataDir string) Options {
	if strings.TrimSpace(o.Key) == "" {
		// Joined as written (not cleaned), so -print-config shows the
		// data_dir the admin wrote: ./data/spoold.key.
		o.Key = KindFile + ":" + strings.TrimSuffix(dataDir, string(filepath.Separator)) + string(filepath.Separator) + DefaultKeyFile
	}
	return o
}

// Validate checks the sources' form (not whether the keys exist: that is
// start-up's to say, where the records are).
func (o Options) Validate() field.Problems {
	var ps field.Problems
	if _, err := ParseSource(o.Key); err != nil {
		ps.Add("key", "%v", err)
	}
	for i, s := range o.PreviousKeys {
		if _, err := ParseSource(s); err != nil {
			ps.Add(field.Index("previous_keys", i), "%v", err)
		}
	}
	return ps
}

// VaultOptions are OpenVault's injected dependencies.
type VaultOptions struct {
	Logger *slog.Logger
	Rand   io.Reader           // keys and nonces; default crypto/rand
	Getenv func(string) string // default os.Getenv
	// Required reports whether a record that does not open stops the start
	// (a configured account's); others are only logged. nil: all required.
	Required func(account string) bool
	// Shared says other spoold nodes read the same records (a PostgreSQL
	// spool): Rotate then refuses, because it would seal every token under
	// a key only this node has, and the others could no longer open them.
	Shared bool
}

// ErrSharedRotation refuses `spoolctl keys rotate` on a spool several nodes
// share, with the rolling procedure that keeps every node able to open
// every token at each step.
var ErrSharedRotation = errors.New("the tokens are in a spool other nodes share, and a rotation here would seal them under a key only this node has: " +
	"create a new key with `spoolctl keys generate`; on every node add it under secrets.previous_keys and restart; " +
	"then on every node make it secrets.key with the old key under secrets.previous_keys and restart (each restart re-seals the tokens under the new key); " +
	"when every node runs the new key, drop the old one")

// Vault is the daemon's keyring over its records: it opens them at
// start-up and rotates the key while running.
type Vault struct {
	src  Source
	kr   *Keyring
	recs Records
	key  string
	log  *slog.Logger
	rand io.Reader
	// required: see VaultOptions.Required; a record of another account that
	// no key opens does not stop a rotation either.
	required func(account string) bool
	shared   bool

	mu sync.Mutex // one rotation at a time
}

// OpenResult says what OpenVault found and did, for the start-up log.
type OpenResult struct {
	Report
	Created          bool // the key file was created
	FinishedRotation bool // a rotation an earlier run started was finished
}

// OpenVault loads the key (and an unfinished rotation's new key, and the
// previous keys), seals every plaintext record key and re-seals every
// record sealed with another loaded key, and finishes a rotation that a
// crash interrupted. A missing key file is created only while no record
// is sealed: a sealed record whose key is gone needs that key, not a new
// one. Records that do not open are an *UnopenableError.
func OpenVault(ctx context.Context, o Options, recs Records, key string, vo VaultOptions) (*Vault, OpenResult, error) {
	var res OpenResult
	log := vo.Logger
	if log == nil {
		log = slog.Default()
	}
	src, err := ParseSource(o.Key)
	if err != nil {
		return nil, res, fmt.Errorf("secrets.key: %w", err)
	}
	lo := LoadOptions{Getenv: vo.Getenv, Rand: vo.Rand}
	primary, _, err := src.Load(lo)
	if errors.Is(err, ErrMissing) && src.Kind == KindFile {
		sealed, serr := sealedAccounts(ctx, recs, key)
		if serr != nil {
			return nil, res, serr
		}
		if len(sealed) > 0 {
			return nil, res, fmt.Errorf("%w; the stored tokens of account(s) %s are sealed with it", err, strings.Join(sealed, ", "))
		}
		lo.Create = true
		primary, res.Created, err = src.Load(lo)
	}
	if err != nil {
		return nil, res, err
	}
	others := []*Key{}
	pending, err := src.LoadPending()
	if err != nil {
		return nil, res, err
	}
	if pending != nil {
		others = append(others, primary)
		primary = pending
	}
	for i, ps := range o.PreviousKeys {
		s, err := ParseSource(ps)
		if err != nil {
			return nil, res, fmt.Errorf("secrets.previous_keys[%d]: %w", i, err)
		}
		k, _, err := s.Load(LoadOptions{Getenv: vo.Getenv})
		if err != nil {
			return nil, res, fmt.Errorf("secrets.previous_keys[%d]: %w", i, err)
		}
		others = append(others, k)
	}
	v := &Vault{src: src, kr: NewKeyring(vo.Rand, primary, others...), recs: recs, key: key, log: log.With("component", "secrets"), rand: vo.Rand, required: vo.Required, shared: vo.Shared}
	rep, err := Reseal(ctx, recs, v.kr, key)
	res.Report = rep
	if err != nil {
		return nil, res, err
	}
	required := map[string]error{}
	for acct, ferr := range rep.Failed {
		if vo.Required == nil || vo.Required(acct) {
			required[acct] = ferr
		} else {
			v.log.Warn("the stored token of an account that is no longer configured cannot be opened; it is not used", "account", acct, "key_id", rep.KeyIDs[acct])
		}
	}
	if len(required) > 0 {
		e := &UnopenableError{Key: key, Failed: required, KeyIDs: rep.KeyIDs}
		for _, k := range v.kr.Keys() {
			e.Loaded, e.Sources = append(e.Loaded, k.ID()), append(e.Sources, k.Source)
		}
		return nil, res, e
	}
	if pending != nil { // every record that matters opens (else returned above)
		if err := src.FinishRotation(); err != nil {
			return nil, res, err
		}
		v.kr.relabel(src.describe())
		v.kr.Retire()
		res.FinishedRotation = true
	}
	return v, res, nil
}

func sealedAccounts(ctx context.Context, recs Records, key string) ([]string, error) {
	accts, err := recs.AccountsWith(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("listing the stored %s records: %w", key, err)
	}
	var out []string
	for _, a := range accts {
		err := recs.AccountUpdate(ctx, a, key, func(old []byte) ([]byte, error) {
			if IsSealed(old) {
				out = append(out, a)
			}
			return nil, nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Keyring is the keyring auth seals with (auth.Options.Sealer).
func (v *Vault) Keyring() *Keyring { return v.kr }

// Source is where the primary key comes from.
func (v *Vault) Source() Source { return v.src }

// RotateResult is what a rotation did.
type RotateResult struct {
	OldKeyID string
	NewKeyID string
	Resealed []string // accounts whose record now uses the new key
	KeyFile  string
}

// Rotate seals every record with a new key while the daemon runs. Order,
// so that a kill at any point leaves every record readable with the old or
// the new key:
//
//  1. the new key is written beside the key file (PendingPath), fsync'd;
//  2. new records are sealed with it from now on, the old key still opens;
//  3. each record is re-sealed in a transaction of its own;
//  4. only then the new key replaces the key file (rename, directory fsync),
//     which retires the old key.
//
// A start-up that finds the new key of step 1 loads both keys and finishes
// steps 3 and 4 (OpenVault).
func (v *Vault) Rotate(ctx context.Context) (RotateResult, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	res := RotateResult{OldKeyID: v.kr.Primary().ID(), KeyFile: v.src.Name}
	if v.shared {
		return res, ErrSharedRotation
	}
	nk, err := v.src.BeginRotation(v.rand)
	if err != nil {
		return res, err
	}
	res.NewKeyID = nk.ID()
	v.kr.SetPrimary(nk)
	v.log.Info("key rotation started", "old_key_id", res.OldKeyID, "new_key_id", res.NewKeyID, "pending_key_file", PendingPath(v.src.Name))
	rep, err := Reseal(ctx, v.recs, v.kr, v.key)
	if err != nil {
		return res, fmt.Errorf("%w; the rotation finishes at the next start or `spoolctl keys rotate`", err)
	}
	res.Resealed = rep.Resealed
	var blocking []string
	for _, a := range rep.Unopenable() {
		if v.required == nil || v.required(a) {
			blocking = append(blocking, a)
		}
	}
	if len(blocking) > 0 {
		return res, fmt.Errorf("the stored tokens of account(s) %s do not open, so the old key stays loaded and the rotation is unfinished: sign those accounts in again, then run `spoolctl keys rotate` again",
			strings.Join(blocking, ", "))
	}
	if err := v.src.FinishRotation(); err != nil {
		return res, err
	}
	v.kr.relabel(v.src.describe())
	v.kr.Retire()
	v.log.Info("key rotation finished: back up the new key file", "key_id", res.NewKeyID, "key_file", v.src.Name, "resealed", len(rep.Resealed))
	return res, nil
}

// SetRecords points the vault at a reopened store (spoold reopens the spool
// after compacting it).
func (v *Vault) SetRecords(r Records) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.recs = r
}
