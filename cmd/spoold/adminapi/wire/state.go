package wire

import "slices"

// State is a message's lifecycle state as the admin API spells it. It is the
// API's own type, not spool.State: the server maps one to the other, and a
// test in package adminapi checks that both list the same states in the same
// order, so a new spool state cannot reach the wire unnoticed.
type State string

// The states, in lifecycle order (DESIGN.md section 3).
const (
	StateQueued    State = "queued"    // waiting for delivery, due now or at next_attempt
	StateActive    State = "active"    // leased by a delivery worker until lease_until
	StateDeferred  State = "deferred"  // failed transiently, waits for next_attempt
	StateHeld      State = "held"      // held by an admin until released
	StateDead      State = "dead"      // dead-lettered with a reason; kept until purged
	StateDelivered State = "delivered" // delivered; a short record is kept for a while
)

// States lists every state in lifecycle order.
var States = []State{StateQueued, StateActive, StateDeferred, StateHeld, StateDead, StateDelivered}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool { return slices.Contains(States, s) }
