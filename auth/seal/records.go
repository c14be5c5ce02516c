package seal

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Records is the store of per-account records (spool.Spool satisfies it).
// AccountUpdate runs fn on the current value and writes what it returns, in
// one durable transaction, so a record re-sealed here cannot overwrite a
// token the daemon saved meanwhile; fn returning (nil, nil) writes nothing.
type Records interface {
	AccountsWith(ctx context.Context, key string) ([]string, error)
	AccountUpdate(ctx context.Context, account, key string, fn func(old []byte) ([]byte, error)) error
}

// Report says what Reseal did, account by account.
type Report struct {
	Sealed   []string          // plaintext records now sealed (migration)
	Resealed []string          // records moved from an older key to the primary
	Current  []string          // records already sealed with the primary
	Failed   map[string]error  // records that do not open, by account
	KeyIDs   map[string]string // the key each record was sealed with before, by account
}

// Unopenable lists the accounts whose records did not open, sorted.
func (r Report) Unopenable() []string {
	var out []string
	for a := range r.Failed {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

var errSkip = errors.New("skip")

// Reseal makes every record key in recs sealed with kr's primary key: a
// plaintext record is sealed (first start with a key), a record sealed with
// another loaded key is re-sealed (rotation), each account in a transaction
// of its own. A record that does not open is left as it is and reported in
// Failed; the error is only for a store that fails.
func Reseal(ctx context.Context, recs Records, kr *Keyring, key string) (Report, error) {
	rep := Report{Failed: map[string]error{}, KeyIDs: map[string]string{}}
	accounts, err := recs.AccountsWith(ctx, key)
	if err != nil {
		return rep, fmt.Errorf("listing the stored %s records: %w", key, err)
	}
	primary := kr.Primary().ID()
	for _, acct := range accounts {
		var outcome *[]string
		err := recs.AccountUpdate(ctx, acct, key, func(old []byte) ([]byte, error) {
			outcome = nil
			if old == nil {
				return nil, nil // deleted meanwhile (logout)
			}
			if !IsSealed(old) {
				outcome = &rep.Sealed
				return kr.Seal(acct, key, old)
			}
			plain, id, err := kr.Open(acct, key, old)
			rep.KeyIDs[acct] = id
			if err != nil {
				rep.Failed[acct] = err
				return nil, errSkip
			}
			if id == primary {
				outcome = &rep.Current
				return nil, nil
			}
			outcome = &rep.Resealed
			return kr.Seal(acct, key, plain)
		})
		switch {
		case errors.Is(err, errSkip):
		case err != nil:
			return rep, fmt.Errorf("re-sealing the %s record of account %s: %w", key, acct, err)
		case outcome != nil:
			*outcome = append(*outcome, acct)
		}
	}
	return rep, nil
}

// UnopenableError is the start-up error for records the loaded keys do not
// open; it names each account and what to do.
type UnopenableError struct {
	Key     string
	Failed  map[string]error
	KeyIDs  map[string]string
	Loaded  []string // IDs of the loaded keys
	Sources []string // where they came from
}

func (e *UnopenableError) Error() string {
	accts := make([]string, 0, len(e.Failed))
	for a := range e.Failed {
		accts = append(accts, a)
	}
	sort.Strings(accts)
	var b strings.Builder
	fmt.Fprintf(&b, "the stored tokens of account(s) %s cannot be opened with the loaded key(s) %s (from %s):",
		strings.Join(accts, ", "), strings.Join(e.Loaded, ", "), strings.Join(e.Sources, ", "))
	for _, a := range accts {
		switch err := e.Failed[a]; {
		case errors.Is(err, ErrNoKey):
			fmt.Fprintf(&b, "\n  %s: sealed with key %s, which is not loaded", a, e.KeyIDs[a])
		default:
			fmt.Fprintf(&b, "\n  %s: %v", a, err)
		}
	}
	fmt.Fprintf(&b, "\nrestore the key these records were sealed with (as secrets.key, or listed under secrets.previous_keys); or give the grants up: stop spoold, run `spoold -config FILE -forget-tokens %s`, start it and sign the account(s) in again with `spoolctl auth login`", strings.Join(accts, ","))
	return b.String()
}
