package adminapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/spoold/spoold/cmd/spoold/adminapi/wire"
	"github.com/spoold/spoold/spool"
)

// Reloader is implemented by a daemon's Info that can re-read its
// configuration file: POST /v1/reload runs Reload, and status shows
// LastReload (nil before the first reload).
type Reloader interface {
	Reload(ctx context.Context) wire.ReloadInfo
	LastReload() *wire.ReloadInfo
}

func (s *Service) reload(r *http.Request) (any, error) {
	rl, ok := s.info.(Reloader)
	if !ok {
		return nil, apiErrorf(wire.CodeUnavailable, "this daemon cannot reload its configuration")
	}
	s.log.Info("reload requested over the admin socket")
	return rl.Reload(r.Context()), nil
}

// maxCandidates bounds the IDs an ambiguous prefix error lists.
const maxCandidates = 10

// resolveID turns what an admin typed into a message ID: the exact ID, the
// ID in another letter case, or a prefix that only one message has. IDs are
// long; people copy the first few characters from `spoolctl list`.
func (s *Service) resolveID(ctx context.Context, raw string) (string, error) {
	id := strings.TrimSpace(raw)
	if id == "" {
		return "", apiErrorf(wire.CodeInvalidArgument, "empty message ID")
	}
	if _, err := s.q.Get(ctx, id); err == nil {
		return id, nil
	} else if !errors.Is(err, spool.ErrNotFound) {
		return "", fmt.Errorf("reading message %s: %w", id, err)
	}
	var matches []string
	cursor := ""
	for {
		page, err := s.q.List(ctx, spool.Filter{}, cursor, bulkPage)
		if err != nil {
			return "", fmt.Errorf("looking up message %s: %w", id, err)
		}
		for _, m := range page.Messages {
			if strings.EqualFold(m.ID, id) {
				return m.ID, nil
			}
			if len(m.ID) > len(id) && strings.EqualFold(m.ID[:len(id)], id) {
				matches = append(matches, m.ID)
			}
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	switch len(matches) {
	case 0:
		return "", apiErrorf(wire.CodeNotFound, "message %s not found", id)
	case 1:
		return matches[0], nil
	}
	slices.Sort(matches)
	shown := matches
	more := ""
	if len(shown) > maxCandidates {
		shown = shown[:maxCandidates]
		more = fmt.Sprintf(" and %d more", len(matches)-maxCandidates)
	}
	return "", apiErrorf(wire.CodeInvalidArgument, "message ID %s is ambiguous: it starts %d messages (%s%s); give more of the ID",
		id, len(matches), strings.Join(shown, ", "), more)
}

// subjectHeaderLimit bounds how much of a body is read to find its Subject.
const subjectHeaderLimit = 256 << 10

// subject reads the decoded Subject header of a stored message; "" when the
// body is gone (delivered) or unreadable: a listing must not fail over it.
func (s *Service) subject(id string) string {
	rc, err := s.q.OpenBody(id)
	if err != nil {
		return ""
	}
	defer rc.Close()
	msg, err := mail.ReadMessage(io.LimitReader(rc, subjectHeaderLimit))
	if err != nil {
		return ""
	}
	raw := msg.Header.Get("Subject")
	dec := new(mime.WordDecoder)
	if subj, err := dec.DecodeHeader(raw); err == nil {
		return subj
	}
	return raw
}

// checkAccount is called when an --account filter matched nothing: a name
// that is neither configured nor on any message is a typo, and the error
// lists the configured names. Offline (no account backend) it cannot tell.
func (s *Service) checkAccount(ctx context.Context, name string) error {
	if name == "" || s.acc == nil {
		return nil
	}
	accs, err := s.acc.Accounts(ctx)
	if err != nil {
		return nil // the empty result stands; the accounts' error is not this request's
	}
	for _, a := range accs {
		if a.Name == name {
			return nil
		}
	}
	return unknownAccount(name, accs)
}

// unknownAccount is the unknown_account error, naming the configured
// accounts so the typo is plain.
func unknownAccount(name string, accs []wire.AccountInfo) error {
	names := make([]string, 0, len(accs))
	for _, a := range accs {
		names = append(names, a.Name)
	}
	if len(names) == 0 {
		return apiErrorf(wire.CodeUnknownAccount, "unknown account %q: no accounts are configured", name)
	}
	return apiErrorf(wire.CodeUnknownAccount, "unknown account %q: the configured accounts are %s", name, strings.Join(names, ", "))
}

// purgeCount counts what Purge(state, before) would delete: the spool's
// rule, last updated before the cut-off.
func (s *Service) purgeCount(ctx context.Context, state spool.State, before time.Time) (int, error) {
	n := 0
	cursor := ""
	for {
		page, err := s.q.List(ctx, spool.Filter{State: state}, cursor, bulkPage)
		if err != nil {
			return 0, fmt.Errorf("counting %s messages: %w", state, err)
		}
		for _, m := range page.Messages {
			if m.Updated.Before(before) {
				n++
			}
		}
		if page.Next == "" {
			return n, nil
		}
		cursor = page.Next
	}
}
