package batching

import (
	"slices"

	"go.uber.org/zap"
)

// KVSaver is an optional Engine extension that turns on the host tier of
// the prefix cache (with a KVReuser, and Config.HostKVBudget above 0):
// when a slot's resident KV is about to be overwritten, it is saved into
// host memory, keyed by the exact tokens it holds, and a later request
// whose prompt starts with those tokens has it restored into its slot
// instead of prefilling them again. Both run on the loop goroutine.
type KVSaver interface {
	// SaveSeq returns a sequence's KV as bytes that RestoreSeq takes.
	SaveSeq(seq int32) ([]byte, error)
	// RestoreSeq replaces a sequence's KV with saved bytes (of any
	// sequence of the same engine).
	RestoreSeq(seq int32, state []byte) error
}

// hostEntry is one saved KV: the tokens it holds, positions 0..len-1.
// state is nil once the entry has left the tier.
type hostEntry struct {
	tokens  []int32
	state   []byte
	lastUse uint64
}

// hostTier is the loop-owned store of saved KV under a byte budget,
// least recently used out first. An entry that is a prefix of a newer one
// is dropped (the newer holds all of it), so a session that moves between
// slot and host keeps one entry. Lookups scan the entries: their number
// is bounded by the budget over the size of one slot's KV, a few hundred
// at most in practice, and each comparison stops at the first difference.
type hostTier struct {
	budget, used int64
	clock        uint64
	entries      []*hostEntry
}

// match returns the entry holding the longest prefix of prompt, and how
// long; nil, 0 when none shares a token.
func (h *hostTier) match(prompt []int32) (*hostEntry, int) {
	var best *hostEntry
	n := 0
	for _, e := range h.entries {
		if m := commonPrefix(prompt, e.tokens); m > n {
			best, n = e, m
		}
	}
	return best, n
}

// covering returns an entry that holds all of tokens (and maybe more).
func (h *hostTier) covering(tokens []int32) *hostEntry {
	for _, e := range h.entries {
		if len(e.tokens) >= len(tokens) && commonPrefix(e.tokens, tokens) == len(tokens) {
			return e
		}
	}
	return nil
}

// touch marks e used now.
func (h *hostTier) touch(e *hostEntry) {
	h.clock++
	e.lastUse = h.clock
}

// put stores state for tokens, dropping the entries it makes redundant and
// then the least recently used ones until it fits. A state larger than the
// whole budget is not kept (false).
func (h *hostTier) put(tokens []int32, state []byte) bool {
	size := int64(len(state))
	if size > h.budget {
		return false
	}
	h.entries = slices.DeleteFunc(h.entries, func(e *hostEntry) bool {
		redundant := len(e.tokens) <= len(tokens) && commonPrefix(e.tokens, tokens) == len(e.tokens)
		if redundant {
			h.drop(e)
		}
		return redundant
	})
	for h.used+size > h.budget {
		oldest := 0
		for i, e := range h.entries {
			if e.lastUse < h.entries[oldest].lastUse {
				oldest = i
			}
		}
		h.drop(h.entries[oldest])
		h.entries = slices.Delete(h.entries, oldest, oldest+1)
	}
	e := &hostEntry{tokens: tokens, state: state}
	h.touch(e)
	h.entries = append(h.entries, e)
	h.used += size
	return true
}

// remove takes e out of the tier.
func (h *hostTier) remove(e *hostEntry) {
	if i := slices.Index(h.entries, e); i >= 0 {
		h.drop(e)
		h.entries = slices.Delete(h.entries, i, i+1)
	}
}

// drop releases e's bytes (the caller removes it from entries).
func (h *hostTier) drop(e *hostEntry) {
	h.used -= int64(len(e.state))
	e.state = nil
}

// HostKVStats is the host tier's part of Stats.
type HostKVStats struct {
	// Bytes and Entries are what the tier holds now, under BudgetBytes.
	Bytes, BudgetBytes int64
	Entries            int
	// Saves and Restores count KV moved to and from host memory, and
	// SavedBytes, RestoredBytes their size; RestoredTokens are the prompt
	// tokens that restores spared from prefill.
	Saves, Restores           uint64
	SavedBytes, RestoredBytes uint64
	RestoredTokens            uint64
}

// saveToHost saves idle slot i's resident KV into the host tier before
// the slot is overwritten. A failure costs only the saving: the slot's
// KV is recomputed by whoever needs it again.
func (s *Scheduler) saveToHost(i int32) {
	r := s.resident[i]
	if s.host == nil || r.dirty || !r.settled || r.n < minReuse || len(r.tokens) < r.n {
		return
	}
	tokens := r.tokens[:r.n]
	if e := s.host.covering(tokens); e != nil {
		s.host.touch(e)
		return
	}
	var state []byte
	err := s.contain("host KV save", func() (err error) {
		state, err = s.saver.SaveSeq(i)
		return err
	})
	if err != nil {
		s.log.Warn("save KV to host memory", zap.Int32("seq", i), zap.Error(err))
		return
	}
	stored := s.host.put(tokens, state)
	s.noteHost(func(st *HostKVStats) {
		if stored {
			st.Saves++
			st.SavedBytes += uint64(len(state))
		}
	})
}

// restoreFromHost sets up q's slot from the host entry the planner chose,
// trimmed to the planned prefix. An entry that left the tier since (a save
// earlier in the same plan needed its room) makes the slot start empty.
func (s *Scheduler) restoreFromHost(q *sequence) error {
	e, keep := q.host, q.kv.keep
	q.host = nil
	if e != nil && e.state != nil {
		err := s.contain("host KV restore", func() error { return s.saver.RestoreSeq(q.slot, e.state) })
		if err == nil {
			if keep < len(e.tokens) {
				if err := s.reuser.TrimSeq(q.slot, keep); err != nil {
					return err
				}
			}
			s.host.touch(e)
			s.noteHost(func(st *HostKVStats) {
				st.Restores++
				st.RestoredBytes += uint64(len(e.state))
				st.RestoredTokens += uint64(keep)
			})
			return nil
		}
		// The entry is no use: drop it, and prefill the whole prompt.
		s.log.Warn("restore KV from host memory", zap.Int32("seq", q.slot), zap.Error(err))
		s.host.remove(e)
		s.noteHost(nil)
	}
	q.kv.keep = 0
	return s.engine.ClearSeq(q.slot)
}

// noteHost refreshes the host tier's figures that Stats reports (under
// mu: the tier itself is the loop's): what it holds now, and what f adds.
func (s *Scheduler) noteHost(f func(*HostKVStats)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hostStats.Bytes, s.hostStats.Entries = s.host.used, len(s.host.entries)
	if f != nil {
		f(&s.hostStats)
	}
}
