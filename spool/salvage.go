package spool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// SalvageOptions configures Salvage.
type SalvageOptions struct {
	Account string           // required: the account the re-queued messages are routed to
	DryRun  bool             // report what would be re-queued; change nothing
	Spool   Options          // options for opening the spool (Logger, Clock, ...)
	Now     func() time.Time // names the moved-aside files; default time.Now
}

// SalvagedBody is one body file that Salvage looked at.
type SalvagedBody struct {
	File    string   // where the body was found
	ID      string   // the new message's ID ("" when skipped or in a dry run)
	From    string   // envelope sender rebuilt from the header
	To      []string // recipients rebuilt from the header
	Problem string   // why it was skipped ("" when re-queued)
}

// SalvageReport says what Salvage did.
type SalvageReport struct {
	DamagedDB string // where the unusable spool.db was moved ("" if there was none or it was usable)
	KeptIn    string // folder holding bodies that could not be re-queued ("" if none)
	Bodies    []SalvagedBody
}

// salvageDirPrefix names the folders where Salvage keeps bodies between
// moving them out of messages/ and committing them.
const salvageDirPrefix = "salvage-"

// salvageHoldReason is the hold reason of a salvaged message.
const salvageHoldReason = "salvaged: envelope rebuilt from the headers (Bcc recipients are lost); check it, then release it"

// Salvage re-queues the body files of a spool whose database was lost or
// damaged, or that recovery moved to orphaned/. It runs while spoold is
// stopped. An unusable spool.db is renamed (never deleted) and a new one is
// made; every body becomes a new message, routed to opts.Account, whose
// envelope is rebuilt from its header (From; To, Cc and spoold's own
// Received "for"), and held for an admin to check and release: a body may
// already have been delivered before the loss. A body is removed from its
// old place only after its message is committed, and a second run after a
// crash re-queues nothing twice (each body's idempotency key is its name).
func Salvage(dir string, opts SalvageOptions) (*SalvageReport, error) {
	if opts.Account == "" {
		return nil, fmt.Errorf("spool: salvage: %w: an account to route the messages to is required", ErrInvalid)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// A mistyped path must not become a new, empty spool.
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("spool: salvage: %s is not a data directory: %w", dir, errors.Join(err, ErrInvalid))
	}
	rep := &SalvageReport{}
	dbPath := filepath.Join(dir, DBFile)
	stamp := opts.Now().UTC().Format("20060102T150405Z")

	// Which bodies are ours to take: with a usable database only those
	// that recovery set aside; without one, every body file.
	usable := false
	probe := opts.Spool
	probe.ReadOnly = opts.DryRun // a dry run writes nothing, not even a new database
	switch s, err := Open(dir, probe); {
	case opts.DryRun && errors.Is(err, os.ErrNotExist):
		// No database at all: every body is taken.
	case err == nil:
		usable = true
		s.Close()
	case errors.Is(err, ErrInUse):
		return nil, fmt.Errorf("spool: salvage: %w (stop spoold first)", err)
	case errors.Is(err, ErrCorrupt), errors.Is(err, ErrNoDatabase):
		// Unusable: start a new database below.
	default:
		return nil, fmt.Errorf("spool: salvage: %w", err)
	}
	// A salvage cut short leaves its bodies in salvage-*/: a rerun takes
	// them too.
	sources, _ := filepath.Glob(filepath.Join(dir, salvageDirPrefix+"*"))
	sources = append(sources, filepath.Join(dir, OrphansDir))
	if !usable {
		sources = append(sources, filepath.Join(dir, MessagesDir))
	}
	var files []string
	for _, d := range sources {
		names, _ := filepath.Glob(filepath.Join(d, "*.eml"))
		files = append(files, names...)
	}
	sort.Strings(files)

	if opts.DryRun {
		for _, f := range files {
			b := SalvagedBody{File: f}
			b.From, b.To, b.Problem = envelopeFromFile(f)
			rep.Bodies = append(rep.Bodies, b)
		}
		return rep, nil
	}

	if !usable {
		if fi, err := os.Stat(dbPath); err == nil {
			rep.DamagedDB = dbPath + ".damaged-" + stamp
			if fi.Size() == 0 {
				rep.DamagedDB = "" // nothing to keep
				if err := os.Remove(dbPath); err != nil {
					return nil, fmt.Errorf("spool: salvage: removing empty %s: %w", dbPath, err)
				}
			} else if err := os.Rename(dbPath, rep.DamagedDB); err != nil {
				return nil, fmt.Errorf("spool: salvage: moving %s aside: %w", dbPath, err)
			}
		}
		// Move the bodies out of messages/ first: the new spool's
		// recovery would take them for orphans.
		rep.KeptIn = filepath.Join(dir, salvageDirPrefix+stamp)
		if err := os.MkdirAll(rep.KeptIn, 0o700); err != nil {
			return nil, fmt.Errorf("spool: salvage: %w", err)
		}
		for i, f := range files {
			dst := filepath.Join(rep.KeptIn, filepath.Base(f))
			if err := os.Rename(f, dst); err != nil {
				return nil, fmt.Errorf("spool: salvage: moving %s: %w", f, err)
			}
			files[i] = dst
		}
		if err := (osFS{}).SyncDir(rep.KeptIn); err != nil {
			return nil, fmt.Errorf("spool: salvage: fsync %s: %w", rep.KeptIn, err)
		}
		if err := (osFS{}).SyncDir(dir); err != nil {
			return nil, fmt.Errorf("spool: salvage: fsync %s: %w", dir, err)
		}
		opts.Spool.allowNew = true
	}

	s, err := Open(dir, opts.Spool)
	if err != nil {
		return rep, fmt.Errorf("spool: salvage: opening the new spool: %w", err)
	}
	defer s.Close()
	ctx := context.Background()
	left := 0
	for _, f := range files {
		b := SalvagedBody{File: f}
		b.From, b.To, b.Problem = envelopeFromFile(f)
		if b.Problem == "" {
			b.ID, err = salvageOne(ctx, s, f, opts.Account, b)
			if err != nil {
				b.Problem = err.Error()
			}
		}
		if b.Problem != "" {
			left++
		}
		rep.Bodies = append(rep.Bodies, b)
	}
	if left == 0 && rep.KeptIn != "" {
		os.Remove(rep.KeptIn) // empty now
		rep.KeptIn = ""
	} else if left > 0 && rep.KeptIn == "" {
		rep.KeptIn = filepath.Join(dir, OrphansDir)
	}
	return rep, nil
}

func salvageOne(ctx context.Context, s *Spool, path, account string, b SalvagedBody) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	id, err := s.Enqueue(ctx, EnqueueRequest{
		From:           b.From,
		To:             b.To,
		Account:        account,
		Source:         Source{Kind: SourceAdmin},
		IdempotencyKey: "salvage:" + filepath.Base(path),
		Hold:           salvageHoldReason, // held in the same commit: never delivered unreviewed
	}, f)
	if err != nil {
		return "", err
	}
	// The message is committed and held: the old copy can go.
	if err := os.Remove(path); err != nil {
		return id, fmt.Errorf("re-queued as %s, but removing %s: %w", id, path, err)
	}
	return id, nil
}

// receivedFor finds the recipient spoold's own Received header names.
var receivedFor = regexp.MustCompile(`\(spoold\)[^;]*\bfor <([^<>\s]+)>`)

// envelopeFromFile rebuilds an envelope from a stored body's header.
func envelopeFromFile(path string) (from string, to []string, problem string) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err.Error()
	}
	defer f.Close()
	msg, err := mail.ReadMessage(bufio.NewReader(io.LimitReader(f, 1<<20)))
	if err != nil {
		return "", nil, "cannot read the message header: " + err.Error()
	}
	h := msg.Header
	if a, err := mail.ParseAddress(h.Get("From")); err == nil {
		from = a.Address
	}
	add := func(addr string) {
		addr = strings.TrimSpace(addr)
		if addr != "" && !slices.Contains(to, addr) {
			to = append(to, addr)
		}
	}
	for _, key := range []string{"To", "Cc"} {
		if list, err := h.AddressList(key); err == nil {
			for _, a := range list {
				add(a.Address)
			}
		}
	}
	for _, r := range h["Received"] {
		if m := receivedFor.FindStringSubmatch(r); m != nil {
			add(m[1])
		}
	}
	if len(to) == 0 {
		return from, nil, "no recipient in To, Cc or Received: re-queue it by hand"
	}
	return from, to, ""
}
