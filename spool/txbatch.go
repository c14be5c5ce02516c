package spool

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// txBatcher group-commits state transitions: delivery workers finishing
// messages at the same time share one bbolt transaction and so one fsync,
// as Enqueue's committer does for new messages. It needs no goroutine of its
// own: the first caller that finds it idle commits batches until the queue is
// empty (leader batching), so an uncontended transition costs no extra delay.
type txBatcher struct {
	mu      sync.Mutex
	queue   []*txReq
	running bool
}

type txReq struct {
	fn   func(tx *bolt.Tx) error
	done chan error
}

// refused marks an error a batched function returned before it wrote
// anything (a state or lease check failed): only that request fails, the rest
// of the batch commits.
type refused struct{ err error }

func (r *refused) Error() string { return r.err.Error() }

// maxTxBatch bounds one transaction so a burst cannot build a huge commit.
const maxTxBatch = 256

// update runs fn in a transaction shared with concurrent callers. fn must be
// safe to run more than once (it is rerun alone if another member of its
// batch fails while writing) and must return a *refused error, having written
// nothing, when it declines.
func (s *Spool) update(fn func(tx *bolt.Tx) error) error {
	b := &s.txb
	r := &txReq{fn: fn, done: make(chan error, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, r)
	if b.running {
		b.mu.Unlock()
		return <-r.done
	}
	b.running = true
	for len(b.queue) > 0 {
		n := min(len(b.queue), maxTxBatch)
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()
		s.commitTxBatch(batch)
		b.mu.Lock()
	}
	b.queue = nil
	b.running = false
	b.mu.Unlock()
	return <-r.done
}

func (s *Spool) commitTxBatch(batch []*txReq) {
	errs := make([]error, len(batch))
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i, r := range batch {
			errs[i] = nil
			if err := r.fn(tx); err != nil {
				var rf *refused
				if errors.As(err, &rf) {
					errs[i] = rf.err
					continue
				}
				return err
			}
		}
		return nil
	})
	switch {
	case err == nil:
		for i, r := range batch {
			r.done <- errs[i]
		}
	case len(batch) == 1:
		batch[0].done <- err
	default:
		// A write failed: rerun each alone so one bad request cannot fail
		// the others, and each gets its own answer.
		for _, r := range batch {
			s.commitTxBatch([]*txReq{r})
		}
	}
}
