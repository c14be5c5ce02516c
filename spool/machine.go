package spool

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Machine applies the message state machine (DESIGN.md section 3) to a
// Message in memory, for Backend implementations other than the embedded
// one: each transition checks the state and lease owner and changes m
// exactly as the embedded spool's transition of the same name, so a
// backend loads the message under its row lock, calls the Machine and
// writes the result in the same transaction. A refused transition returns
// the same typed errors (ErrWrongState, ErrLeaseLost, ErrInvalid) and
// leaves m unchanged only in its meaning: callers discard m on error.
// The conformance suite holds both implementations to the same behaviour.
type Machine struct {
	Clock         func() time.Time // default time.Now
	HistoryLimit  int              // attempts kept per message; default 20
	LeaseDuration time.Duration    // claim lease; default 5m
}

// withDefaults returns mc with every zero field set to the spool's default
// (Options.WithDefaults holds them, once).
func (mc Machine) withDefaults() Machine {
	o := Options{Clock: mc.Clock, HistoryLimit: mc.HistoryLimit, LeaseDuration: mc.LeaseDuration}.WithDefaults()
	return Machine{Clock: o.Clock, HistoryLimit: o.HistoryLimit, LeaseDuration: o.LeaseDuration}
}

// Now returns the machine's clock reading.
func (mc Machine) Now() time.Time { return mc.withDefaults().Clock() }

// Lease returns the lease duration in effect.
func (mc Machine) Lease() time.Duration { return mc.withDefaults().LeaseDuration }

// ValidateEnqueue checks an EnqueueRequest as Enqueue does (errors wrap ErrInvalid).
func ValidateEnqueue(req EnqueueRequest) error { return validateEnqueue(req) }

// ValidID reports whether id is a well-formed message ID.
func ValidID(id string) bool { return validID(id) }

// IsDue reports whether a message in state st waits for NextAttempt
// (queued or deferred): the states a claim takes from.
func IsDue(st State) bool { return isDueState(st) }

// NewIDFunc returns the default ID generator (time-sortable, random from r;
// nil = crypto/rand), for backends that make their own IDs.
func NewIDFunc(r io.Reader) func(time.Time) (string, error) { return newIDGen(r).next }

// NewMessage builds the queued record of an accepted EnqueueRequest.
func (mc Machine) NewMessage(req EnqueueRequest, id string, size int64, now time.Time) *Message {
	m := &Message{
		ID:              id,
		State:           StateQueued,
		From:            req.From,
		Account:         req.Account,
		Source:          req.Source,
		Size:            size,
		Created:         now,
		Updated:         now,
		NextAttempt:     now,
		IdempotencyKey:  req.IdempotencyKey,
		NotifyOnFailure: req.NotifyOnFailure,
	}
	if req.Hold != "" {
		m.State, m.Reason = StateHeld, req.Hold
	}
	// One allocation, as the embedded spool's Enqueue makes.
	m.Recipients = make([]Recipient, len(req.To))
	for i, to := range req.To {
		m.Recipients[i] = Recipient{Addr: to, State: RcptPending}
	}
	return m
}

// Claim leases a due message to owner until now + the lease duration.
// With ifCrash it also starts an attempt (ClaimAccountStart) and returns
// the message as claimed, before the attempt was counted.
func (mc Machine) Claim(m *Message, owner string, now time.Time, ifCrash func(*Message) time.Time) (*Message, error) {
	if !isDueState(m.State) {
		return nil, wrongState(m, "queued or deferred")
	}
	mc = mc.withDefaults()
	m.State = StateActive
	m.LeaseOwner = owner
	m.LeaseUntil = now.Add(mc.LeaseDuration)
	m.Updated = now
	if ifCrash == nil {
		c := *m
		return &c, nil
	}
	c := *m
	c.History = slices.Clone(m.History)
	c.Recipients = slices.Clone(m.Recipients)
	mc.startAttempt(m, owner, now, ifCrash(&c))
	return &c, nil
}

// RenewLease extends owner's lease.
func (mc Machine) RenewLease(m *Message, owner string, until time.Time) error {
	if err := checkLease(m, owner); err != nil {
		return err
	}
	m.LeaseUntil = until
	return nil
}

// StartAttempt counts an attempt and records the next attempt time to use
// if the worker crashes.
func (mc Machine) StartAttempt(m *Message, owner string, now, ifCrash time.Time) error {
	mc = mc.withDefaults()
	now = mc.nowOr(now)
	if err := checkLease(m, owner); err != nil {
		return err
	}
	mc.startAttempt(m, owner, now, ifCrash)
	return nil
}

// Delivered ends an attempt: StateDelivered, or StateDead when a recipient
// failed. The caller removes the body when the result is StateDelivered.
func (mc Machine) Delivered(m *Message, owner string, r Result) error {
	mc = mc.withDefaults()
	now := mc.nowOr(r.Now)
	if err := checkLease(m, owner); err != nil {
		return err
	}
	for _, rr := range r.Recipients {
		if rr.State == RcptPending {
			return fmt.Errorf("%w: recipient %q still pending (use Defer)", ErrInvalid, rr.Addr)
		}
	}
	if err := applyRecipients(m, r.Recipients, now); err != nil {
		return err
	}
	for i := range m.Recipients {
		if m.Recipients[i].State == RcptPending {
			m.Recipients[i].State = RcptDelivered
			m.Recipients[i].DeliveredAt = now
		}
	}
	if failed := failedRecipients(m); len(failed) > 0 {
		reason := "recipients refused: " + strings.Join(failed, ", ")
		if r.Reason != "" {
			reason = r.Reason + "; " + reason
		}
		errRec := r.Error
		if errRec == nil {
			for _, rc := range m.Recipients {
				if rc.State == RcptFailed && rc.Error != nil {
					errRec = rc.Error
					break
				}
			}
		}
		mc.closeAttempt(m, owner, now, "dead", errRec)
		leaveActive(m, StateDead, now)
		m.Reason = reason
		if errRec != nil {
			m.LastError = errRec
		}
		return nil
	}
	mc.closeAttempt(m, owner, now, "delivered", nil)
	leaveActive(m, StateDelivered, now)
	m.DeliveredAt = now
	m.Reason = ""
	m.BodyInline = false
	return nil
}

// Defer ends an attempt with a transient failure: StateDeferred until next.
func (mc Machine) Defer(m *Message, owner string, next time.Time, r Result) error {
	mc = mc.withDefaults()
	now := mc.nowOr(r.Now)
	if next.IsZero() {
		next = now
	}
	if err := checkLease(m, owner); err != nil {
		return err
	}
	if err := applyRecipients(m, r.Recipients, now); err != nil {
		return err
	}
	mc.closeAttempt(m, owner, now, "deferred", r.Error)
	leaveActive(m, StateDeferred, now)
	m.NextAttempt = next
	if r.Error != nil {
		m.LastError = r.Error
	}
	m.Reason = r.Reason
	return nil
}

// Dead ends an attempt with a permanent failure.
func (mc Machine) Dead(m *Message, owner string, r Result) error {
	mc = mc.withDefaults()
	now := mc.nowOr(r.Now)
	if err := checkLease(m, owner); err != nil {
		return err
	}
	if err := applyRecipients(m, r.Recipients, now); err != nil {
		return err
	}
	mc.closeAttempt(m, owner, now, "dead", r.Error)
	leaveActive(m, StateDead, now)
	m.Reason = r.Reason
	if m.Reason == "" && r.Error != nil {
		m.Reason = r.Error.Text
	}
	if m.Reason == "" {
		m.Reason = "permanent failure"
	}
	if r.Error != nil {
		m.LastError = r.Error
	}
	return nil
}

// Postpone returns an active message to StateDeferred until next without
// using an attempt.
func (mc Machine) Postpone(m *Message, owner string, next time.Time, reason string) error {
	now := mc.withDefaults().Clock()
	if next.IsZero() {
		next = now
	}
	if err := checkLease(m, owner); err != nil {
		return err
	}
	if i := openAttempt(m, owner); i >= 0 {
		m.History = append(m.History[:i:i], m.History[i+1:]...)
		if m.Attempts > 0 {
			m.Attempts--
		}
	}
	leaveActive(m, StateDeferred, now)
	m.NextAttempt = next
	m.Reason = reason
	return nil
}

// Hold moves a queued, deferred or dead message to StateHeld.
func (mc Machine) Hold(m *Message, reason string) error {
	switch m.State {
	case StateQueued, StateDeferred, StateDead:
	default:
		return wrongState(m, "queued, deferred or dead")
	}
	m.State = StateHeld
	m.Reason = reason
	m.Updated = mc.withDefaults().Clock()
	return nil
}

// Release moves a held message to StateQueued, due now. bodyPresent says
// whether its body is still stored.
func (mc Machine) Release(m *Message, bodyPresent bool) error {
	if m.State != StateHeld {
		return wrongState(m, "held")
	}
	return mc.queueNow(m, bodyPresent)
}

// Requeue moves a dead or held message to StateQueued, due now, attempts
// reset and failed recipients pending again.
func (mc Machine) Requeue(m *Message, bodyPresent bool) error {
	if m.State != StateDead && m.State != StateHeld {
		return wrongState(m, "dead or held")
	}
	if err := mc.queueNow(m, bodyPresent); err != nil {
		return err
	}
	for i := range m.Recipients {
		if m.Recipients[i].State == RcptFailed {
			m.Recipients[i].State = RcptPending
			m.Recipients[i].Error = nil
		}
	}
	m.Attempts = 0
	return nil
}

func (mc Machine) queueNow(m *Message, bodyPresent bool) error {
	if !bodyPresent {
		return fmt.Errorf("%w: body missing", ErrNotFound)
	}
	now := mc.withDefaults().Clock()
	m.State = StateQueued
	m.NextAttempt = now
	m.Reason = ""
	m.Updated = now
	return nil
}

// Flush makes a queued or deferred message due now; changed says whether
// it was not due yet.
func (mc Machine) Flush(m *Message) (changed bool, err error) {
	if !isDueState(m.State) {
		return false, wrongState(m, "queued or deferred")
	}
	now := mc.withDefaults().Clock()
	if m.NextAttempt.After(now) {
		m.NextAttempt = now
		m.Updated = now
		return true, nil
	}
	return false, nil
}

// CheckDelete refuses to delete an active message.
func (mc Machine) CheckDelete(m *Message) error {
	if m.State == StateActive {
		return wrongState(m, "not active")
	}
	return nil
}

// CheckPurge refuses a purge of any state but dead or delivered: only
// finished messages are purged by age.
func CheckPurge(state State) error {
	if state != StateDead && state != StateDelivered {
		return fmt.Errorf("%w: state must be dead or delivered, not %q", ErrInvalid, state)
	}
	return nil
}

// Rescue returns a message whose lease expired to StateQueued, due at
// max(NextAttempt, now), its open attempt ended as interrupted.
func (mc Machine) Rescue(m *Message, now time.Time) {
	if i := openAttempt(m, m.LeaseOwner); i >= 0 {
		m.History[i].End = now
		m.History[i].Result = "interrupted"
	}
	m.State = StateQueued
	m.LeaseOwner, m.LeaseUntil = "", time.Time{}
	if m.NextAttempt.Before(now) {
		m.NextAttempt = now
	}
	m.Updated = now
}

// CheckAccountKey validates a per-account record's names as AccountGet and
// AccountPut do.
func CheckAccountKey(account, key string) error { return validAccountKey(account, key) }

// MaxAlertKey is the longest alert record key AlertWrite accepts.
const MaxAlertKey = maxAlertKey

// checkLease is the guard of every transition out of StateActive: the caller
// must still own the lease. A lease that expired but was not yet rescued is
// still the owner's.
func checkLease(m *Message, owner string) error {
	if m.State != StateActive {
		return fmt.Errorf("%w: message is %s: %w", ErrLeaseLost, m.State, ErrWrongState)
	}
	if m.LeaseOwner != owner {
		return fmt.Errorf("%w: leased by another worker", ErrLeaseLost)
	}
	return nil
}

func wrongState(m *Message, want string) error {
	return fmt.Errorf("%w: message is %s, need %s", ErrWrongState, m.State, want)
}

// nowOr returns t, or the clock's reading when t is zero; mc has its defaults.
func (mc Machine) nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return mc.Clock()
	}
	return t
}

// trimHistory keeps the last HistoryLimit attempts; mc has its defaults.
func (mc Machine) trimHistory(m *Message) {
	if n := len(m.History) - mc.HistoryLimit; n > 0 {
		m.History = append([]Attempt(nil), m.History[n:]...)
	}
}

// openAttempt returns the index of owner's open attempt, or -1.
func openAttempt(m *Message, owner string) int {
	for i := len(m.History) - 1; i >= 0; i-- {
		if m.History[i].End.IsZero() && m.History[i].Owner == owner {
			return i
		}
	}
	return -1
}

// startAttempt ends owner's attempt left open (a StartAttempt repeated) as
// interrupted and opens a new one, counted; mc has its defaults.
func (mc Machine) startAttempt(m *Message, owner string, now, ifCrash time.Time) {
	if i := openAttempt(m, owner); i >= 0 {
		m.History[i].End = now
		m.History[i].Result = "interrupted"
	}
	m.Attempts++
	m.History = append(m.History, Attempt{Start: now, Owner: owner})
	mc.trimHistory(m)
	m.NextAttempt = ifCrash
	m.Updated = now
}

// closeAttempt ends owner's open attempt with result. Without one (the worker
// skipped StartAttempt) the attempt is counted and recorded here; mc has its
// defaults.
func (mc Machine) closeAttempt(m *Message, owner string, now time.Time, result string, e *ErrorRecord) {
	if i := openAttempt(m, owner); i >= 0 {
		m.History[i].End = now
		m.History[i].Result = result
		m.History[i].Error = e
		return
	}
	m.Attempts++
	m.History = append(m.History, Attempt{Start: now, End: now, Owner: owner, Result: result, Error: e})
	mc.trimHistory(m)
}

func leaveActive(m *Message, state State, now time.Time) {
	m.State = state
	m.LeaseOwner = ""
	m.LeaseUntil = time.Time{}
	m.Updated = now
}

// applyRecipients records per-recipient outcomes by address.
func applyRecipients(m *Message, rr []RecipientResult, now time.Time) error {
	for _, r := range rr {
		switch r.State {
		case RcptDelivered, RcptFailed, RcptPending:
		default:
			return fmt.Errorf("%w: recipient %q: unknown state %q", ErrInvalid, r.Addr, r.State)
		}
		found := false
		for i := range m.Recipients {
			rc := &m.Recipients[i]
			if rc.Addr != r.Addr {
				continue
			}
			found = true
			if rc.State == RcptDelivered {
				continue // a later failure cannot undo a delivery
			}
			rc.State = r.State
			rc.Error = r.Error
			if r.State == RcptDelivered {
				rc.DeliveredAt = now
				rc.Error = nil
			}
		}
		if !found {
			return fmt.Errorf("%w: %q is not a recipient of this message", ErrInvalid, r.Addr)
		}
	}
	return nil
}

func failedRecipients(m *Message) []string {
	var out []string
	for _, r := range m.Recipients {
		if r.State == RcptFailed {
			out = append(out, r.Addr)
		}
	}
	return out
}
