package batching

import (
	"fmt"

	"go.uber.org/zap"
)

// KVReuser is an optional Engine extension that turns on the prefix cache:
// a finished sequence's KV stays resident in its slot, and a new request
// starts from the longest prefix of its prompt that some slot holds,
// prefilling only the rest.
type KVReuser interface {
	// TrimSeq drops a sequence's positions from keep on.
	TrimSeq(seq int32, keep int) error
	// CopySeq makes dst a copy of the whole of src (llama.cpp aborts on a
	// partial copy: copy all, then trim).
	CopySeq(src, dst int32) error
}

// minReuse is the shortest prefix worth a slot's resident KV: below it a
// request takes an empty or least recently used slot instead, keeping other
// slots' caches.
const minReuse = 16

// kvPlan is how an admitted request's slot gets its starting KV.
type kvPlan struct {
	copyFrom int32 // a slot to copy the whole KV of (then trim), or -1
	keep     int   // positions reused
	clear    bool  // the slot held other KV that must go first
}

// slotKV is the loop-owned record of an idle slot's KV: how many tokens
// it holds (the tokens themselves are in the index) and when it was last
// used. dirty: a clear of the slot failed, so it holds something unknown
// and is cleared again before it is used.
type slotKV struct {
	n       int
	lastUse uint64
	dirty   bool
}

// startKV sets up a seated sequence's KV as planned. On a failure the
// caller ends the sequence with the error, which clears the slot.
func (s *Scheduler) startKV(q *sequence) error {
	p := q.kv
	s.setResident(q.slot, slotKV{})
	var err error
	switch {
	case p.copyFrom >= 0:
		if err = s.reuser.CopySeq(p.copyFrom, q.slot); err == nil {
			err = s.reuser.TrimSeq(q.slot, p.keep)
		}
	case p.keep > 0:
		err = s.reuser.TrimSeq(q.slot, p.keep)
	case p.clear:
		err = s.engine.ClearSeq(q.slot)
	}
	if err != nil {
		return fmt.Errorf("prepare KV of slot %d: %w", q.slot, err)
	}
	q.nPast, q.cached = p.keep, p.keep
	return nil
}

// release is what finish does with a slot's KV: keep it resident for later
// prefixes when it is consistent, else clear it. A clear that fails marks
// the slot dirty: the next sequence planned into it clears it first, so a
// failure of the engine here fails no later sequence.
func (s *Scheduler) release(q *sequence, reason FinishReason) {
	if s.reuser != nil && reason != FinishError && reason != FinishShutdown && q.nPast > 0 {
		s.setResident(q.slot, slotKV{n: q.nPast, lastUse: s.useClock})
		s.index.set(q.slot, q.tokens[:q.nPast])
		s.useClock++
		return
	}
	s.setResident(q.slot, slotKV{})
	s.index.remove(q.slot)
	err := s.contain("engine", func() error { return s.engine.ClearSeq(q.slot) })
	if err != nil {
		s.log.Error("clear sequence", zap.Int32("seq", q.slot), zap.Error(err))
		s.resident[q.slot].dirty = true
	}
}

// setResident records what idle slot i keeps, and the total for Stats.
func (s *Scheduler) setResident(i int32, kv slotKV) {
	s.mu.Lock()
	s.idleResident += kv.n - s.resident[i].n
	s.mu.Unlock()
	s.resident[i] = kv
}

func commonPrefix(a, b []int32) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
