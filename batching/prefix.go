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
// used.
type slotKV struct {
	n       int
	lastUse uint64
}

// pickSlot chooses a free slot for prompt (one must exist) and how to start
// its KV, and indexes the slot as holding prompt. Loop goroutine only.
func (s *Scheduler) pickSlot(prompt []int32) (int, kvPlan) {
	victim := -1
	for i, q := range s.slots {
		if q == nil && (victim < 0 || s.colder(i, victim)) {
			victim = i
		}
	}
	if s.reuser == nil {
		return victim, kvPlan{copyFrom: -1, clear: s.resident[victim].n > 0}
	}
	i, plan := s.planKV(prompt, victim)
	s.index.set(int32(i), prompt)
	return i, plan
}

// planKV finds the longest prefix of prompt some slot holds and plans how
// the new sequence gets it, given victim, the free slot to take otherwise
// (empty, else least recently used):
//   - the idle slot holding the longest prefix (the least recently used of
//     equals) is trimmed and reused in place, unless what it holds beyond
//     the prefix is at least as long as the prefix and an empty slot is
//     there: then (say only a shared system prompt matches a long idle
//     session) the empty slot gets a copy trimmed to the prefix, and the
//     idle session keeps all its KV;
//   - a running slot's KV (as far as it has been fed) is copied whole and
//     trimmed when it holds a longer prefix than any idle slot;
//   - below minReuse tokens the victim is taken as is.
func (s *Scheduler) planKV(prompt []int32, victim int) (int, kvPlan) {
	s.index.match(prompt, s.matches)
	bestFree, freeMatch, runSlot, runMatch := -1, 0, -1, 0
	for i, q := range s.slots {
		m := s.matches[i]
		if q != nil {
			// A running slot is indexed by its prompt; only what has been
			// fed is in its KV.
			if m = min(m, q.nPast); m > runMatch {
				runSlot, runMatch = i, m
			}
		} else if m > freeMatch || (m == freeMatch && m > 0 && s.colder(i, bestFree)) {
			bestFree, freeMatch = i, m
		}
	}
	limit := len(prompt) - 1 // at least one token is fed, for logits
	switch {
	case freeMatch >= minReuse && freeMatch >= runMatch:
		keep := min(freeMatch, limit)
		if lost := s.resident[bestFree].n - freeMatch; lost >= freeMatch && s.resident[victim].n == 0 {
			return victim, kvPlan{copyFrom: int32(bestFree), keep: keep, clear: true}
		}
		return bestFree, kvPlan{copyFrom: -1, keep: keep, clear: true}
	case runMatch >= minReuse:
		return victim, kvPlan{copyFrom: int32(runSlot), keep: min(runMatch, limit), clear: true}
	}
	return victim, kvPlan{copyFrom: -1, clear: s.resident[victim].n > 0}
}

// colder reports whether free slot a is a better victim than b: empty
// first, then least recently used.
func (s *Scheduler) colder(a, b int) bool {
	ea, eb := s.resident[a].n == 0, s.resident[b].n == 0
	if ea != eb {
		return ea
	}
	return s.resident[a].lastUse < s.resident[b].lastUse
}

// startKV sets up an admitted sequence's KV as planned. A failure ends the
// request with an error and leaves the slot empty.
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
		_ = s.engine.ClearSeq(q.slot)
		s.index.remove(q.slot)
		return fmt.Errorf("prepare KV of slot %d: %w", q.slot, err)
	}
	q.nPast, q.cached = p.keep, p.keep
	return nil
}

// release is what finish does with a slot's KV: keep it resident for later
// prefixes when it is consistent, else clear it.
func (s *Scheduler) release(q *sequence, reason FinishReason) {
	if s.reuser != nil && reason != FinishError && reason != FinishShutdown && q.nPast > 0 {
		s.setResident(q.slot, slotKV{n: q.nPast, lastUse: s.useClock})
		s.index.set(q.slot, q.tokens[:q.nPast])
		s.useClock++
		return
	}
	s.setResident(q.slot, slotKV{})
	s.index.remove(q.slot)
	if err := s.engine.ClearSeq(q.slot); err != nil {
		s.log.Error("clear sequence", zap.Int32("seq", q.slot), zap.Error(err))
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
