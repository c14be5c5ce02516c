package alerts

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spoold/spoold/spool"
	"github.com/spoold/spoold/spool/notice"
)

// digestLines is how many dead letters a digest lists one by one.
const digestLines = 10

// digestCheck sends one notice about the messages dead-lettered since the
// last digest, at most once per alerts.dead_letter_digest.
func (a *Alerter) digestCheck(ctx context.Context, now time.Time) error {
	a.mu.Lock()
	d := a.digest
	a.mu.Unlock()
	if !d.LastSent.IsZero() && now.Sub(d.LastSent) < *a.opts.DeadLetterDigest {
		return nil
	}
	stats, err := a.queue.Stats(ctx)
	if err != nil {
		return err
	}
	// Walking the dead letters is only worth it when their number moved
	// (or after a start); a digest that was due but waiting rescans.
	if stats[spool.StateDead] == a.lastDead {
		return nil
	}
	var fresh []*spool.Message
	watermark := d.Watermark
	cursor := ""
	for {
		p, err := a.queue.List(ctx, spool.Filter{State: spool.StateDead}, cursor, 500)
		if err != nil {
			return err
		}
		for _, m := range p.Messages {
			if !m.Updated.After(d.Watermark) || strings.HasPrefix(m.IdempotencyKey, alertMailKey) {
				continue
			}
			fresh = append(fresh, m)
			if m.Updated.After(watermark) {
				watermark = m.Updated
			}
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	a.lastDead = stats[spool.StateDead]
	if len(fresh) == 0 {
		return nil
	}
	since := fresh[0].Updated
	var lines []string
	for i, m := range fresh {
		if m.Updated.Before(since) {
			since = m.Updated
		}
		if i < digestLines {
			reason := m.Reason
			if reason == "" && m.LastError != nil {
				reason = m.LastError.Text
			}
			lines = append(lines, fmt.Sprintf("%s (account %s, to %s): %s", m.ID, m.Account, recipients(m), reason))
		}
	}
	if len(fresh) > digestLines {
		lines = append(lines, fmt.Sprintf("... and %d more", len(fresh)-digestLines))
	}
	f := finding{Key: KindDeadLetters, Kind: KindDeadLetters, Severity: SeverityWarning,
		Title: fmt.Sprintf("%d new dead letter(s)", len(fresh)),
		Text:  fmt.Sprintf("%d message(s) could not be delivered and were dead-lettered since %s: %s.", len(fresh), since.Format(time.RFC3339), strings.Join(lines, "; ")),
		Fix:   "Run spoolctl list --state dead and spoolctl show ID for each reason; once the cause is fixed, spoolctl requeue ID sends it again.",
		Since: since}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.digest = digestRecord{Watermark: watermark, LastSent: now}
	put := map[string][]byte{keyDigest: mustJSON(a.digest)}
	a.queueLocked(put, a.alertFor(f, EventNotice, since, now))
	return a.writeLocked(ctx, put, nil)
}

func recipients(m *spool.Message) string {
	var to []string
	for _, r := range m.Recipients {
		to = append(to, r.Addr)
	}
	if len(to) > 3 {
		to = append(to[:3], "...")
	}
	return strings.Join(to, ", ")
}

// delayCheck warns the sender of each message still undelivered after
// alerts.delay_warning, once per message (like Postfix's
// delay_warning_time). The warning is queued like a failure notice.
func (a *Alerter) delayCheck(ctx context.Context, now time.Time) error {
	cutoff := now.Add(-a.opts.DelayWarning)
	seen := map[string]bool{}
	put := map[string][]byte{}
	for _, st := range []spool.State{spool.StateQueued, spool.StateDeferred, spool.StateActive, spool.StateHeld} {
		cursor := ""
		for {
			p, err := a.queue.List(ctx, spool.Filter{State: st, CreatedBefore: cutoff}, cursor, 500)
			if err != nil {
				return err
			}
			for _, m := range p.Messages {
				seen[m.ID] = true
				a.mu.Lock()
				_, done := a.delayed[m.ID]
				a.mu.Unlock()
				if done || st == spool.StateHeld || m.From == "" || m.Source.Kind == spool.SourceNotice {
					continue
				}
				if err := a.warnDelay(ctx, m, now); err != nil {
					a.log.Warn("cannot queue a delay warning", "msg_id", m.ID, "err", err)
					continue
				}
				a.mu.Lock()
				a.delayed[m.ID] = now
				a.mu.Unlock()
				put[keyDelay+m.ID] = mustJSON(now)
			}
			if p.Next == "" {
				break
			}
			cursor = p.Next
		}
	}
	// Forget the warnings of messages that left the queue; a message
	// merely not listed (it became newer? never) stays warned.
	var del []string
	a.mu.Lock()
	ids := make([]string, 0, len(a.delayed))
	for id := range a.delayed {
		if !seen[id] {
			ids = append(ids, id)
		}
	}
	a.mu.Unlock()
	for _, id := range ids {
		m, err := a.queue.Get(ctx, id)
		if err == nil && m.State != spool.StateDelivered && m.State != spool.StateDead {
			continue
		}
		a.mu.Lock()
		delete(a.delayed, id)
		a.mu.Unlock()
		del = append(del, keyDelay+id)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.writeLocked(ctx, put, del)
}

// warnDelay queues the delay warning to m's sender through m's account.
func (a *Alerter) warnDelay(ctx context.Context, m *spool.Message, now time.Time) error {
	from := a.senders[m.Account]
	if from == "" {
		from = "postmaster@" + a.host
	}
	var to []string
	for _, r := range m.Recipients {
		if r.State != spool.RcptDelivered {
			to = append(to, r.Addr)
		}
	}
	n := notice.Notice{
		From: from, FromName: "Mail Delivery System", To: m.From,
		Subject:   "Delayed Mail (still being retried)",
		Date:      now,
		MessageID: notice.MessageID("delay-warning:"+m.ID, a.host),
		Reply:     true,
		Text: fmt.Sprintf("This is spoold on %s. Your message has not been delivered yet, %s after it was sent. "+
			"It is still in the queue and spoold keeps trying; you do not need to send it again. "+
			"You get one more message only if it finally cannot be delivered.", a.host, roundAge(now.Sub(m.Created))),
		Details: []notice.Detail{{Label: "Queued", Value: m.Created.Format(time.RFC1123Z)}, {Label: "Queue ID", Value: m.ID}},
	}
	for _, r := range to {
		n.Failed = append(n.Failed, notice.Failure{Recipient: r})
	}
	if m.LastError != nil && m.LastError.Text != "" {
		n.Reason = a.scrub(m.LastError.Text)
	}
	body, err := notice.Bytes(n)
	if err != nil {
		return err
	}
	_, err = a.queue.Enqueue(ctx, spool.EnqueueRequest{
		To: []string{m.From}, Account: m.Account,
		Source:         spool.Source{Kind: spool.SourceNotice, NoticeFor: m.ID},
		IdempotencyKey: "delay-warning:" + m.ID,
	}, strings.NewReader(string(body)))
	return err
}
