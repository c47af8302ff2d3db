package batching_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
)

// hostRun steps sessions in waves: every session's step k runs
// concurrently with the others' (more sessions than slots, so each wave
// evicts the last one's KV), and step k+1 starts when the wave is done. It
// returns every step's text, the prompt tokens served from reused KV, and
// the scheduler's final stats.
func hostRun(t *testing.T, e batching.Engine, vocab batching.Vocab, cfg batching.Config, prompts [][]string) ([][]string, int, batching.Stats) {
	t.Helper()
	s, err := batching.New(e, vocab, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	out := make([][]string, len(prompts))
	var cached int
	var mu sync.Mutex
	for step := range prompts[0] {
		var wg sync.WaitGroup
		for i := range prompts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := run(t, s, batching.Request{Prompt: prompt(prompts[i][step]), MaxTokens: 8})
				mu.Lock()
				out[i] = append(out[i], c.Text)
				cached += c.Usage.CachedTokens
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	return out, cached, s.Stats()
}

// With four times more sessions than slots, the host tier saves the KV of
// sessions whose slots are taken and restores it at their next step:
// greedy outputs equal those without any cache and with the slots' cache
// alone, more prompt tokens are served from reused KV than with the slots
// alone, and a budget smaller than the sessions' KV evicts least recently
// used entries without changing an output.
func TestHostTierKeepsOutputs(t *testing.T) {
	t.Parallel()
	prompts := sessionPrompts(16, 5)
	cfg := batching.Config{Slots: 4, QueueSize: 64, StepTokens: 64, CtxPerSlot: 4096}

	plain := hashModel(false)
	noCache := cfg
	noCache.NoPrefixCache = true
	want, _, _ := hostRun(t, plain.Engine(), plain, noCache, prompts)

	slotsOnly := hashModel(false)
	got, cachedSlots, st := hostRun(t, slotsOnly.Saver(), slotsOnly, cfg, prompts)
	sameOutputs(t, "slots only", got, want)
	if st.Host != (batching.HostKVStats{}) {
		t.Errorf("host tier without a budget: %+v", st.Host)
	}

	for _, budget := range []int64{64 << 20, 8 << 10} {
		m := hashModel(false)
		withHost := cfg
		withHost.HostKVBudget = budget
		got, cachedHost, st := hostRun(t, m.Saver(), m, withHost, prompts)
		sameOutputs(t, "host tier", got, want)
		saves, restores := m.SavesRestores()
		h := st.Host
		if h.Saves == 0 || h.Restores == 0 || uint64(saves) != h.Saves || uint64(restores) != h.Restores {
			t.Errorf("budget %d: stats %+v; the engine saw %d saves, %d restores", budget, h, saves, restores)
		}
		if h.Bytes > budget || h.BudgetBytes != budget || h.RestoredTokens == 0 || h.RestoredBytes == 0 || h.SavedBytes < h.RestoredBytes/uint64(max(h.Restores, 1)) {
			t.Errorf("budget %d: stats %+v", budget, h)
		}
		if budget > 1<<20 && cachedHost <= cachedSlots {
			t.Errorf("cached prompt tokens: %d with the host tier, %d with the slots alone", cachedHost, cachedSlots)
		}
		t.Logf("budget %d: cached %d prompt tokens (slots alone %d); %+v", budget, cachedHost, cachedSlots, h)
	}
}

// An engine that fails to save or to restore costs only the reuse: a
// failed save is skipped, a failed restore starts the slot empty and
// prefills the whole prompt; no request fails and no output changes.
func TestHostTierFailuresFallBackToPrefill(t *testing.T) {
	t.Parallel()
	prompts := sessionPrompts(8, 4)
	cfg := batching.Config{Slots: 2, QueueSize: 64, StepTokens: 64, CtxPerSlot: 4096, HostKVBudget: 64 << 20}
	plain := hashModel(false)
	noCache := cfg
	noCache.NoPrefixCache = true
	want, _, _ := hostRun(t, plain.Engine(), plain, noCache, prompts)

	m := hashModel(false)
	e := m.Saver()
	e.RestoreSeqFunc = func(seq int32, state []byte) error {
		_ = m.ClearSeq(seq) // llama.cpp leaves the sequence empty
		return errors.New("restore refused")
	}
	got, _, st := hostRun(t, e, m, cfg, prompts)
	sameOutputs(t, "failing restores", got, want)
	if st.Host.Saves == 0 || st.Host.Restores != 0 {
		t.Errorf("failing restores: %+v", st.Host)
	}

	m = hashModel(false)
	e = m.Saver()
	e.SaveSeqFunc = func(int32) ([]byte, error) { panic("save panics") }
	got, _, st = hostRun(t, e, m, cfg, prompts)
	sameOutputs(t, "panicking saves", got, want)
	if st.Host.Saves != 0 || st.Host.Entries != 0 {
		t.Errorf("panicking saves: %+v", st.Host)
	}
}

// sameOutputs fails the test at the first step whose text differs.
func sameOutputs(t *testing.T, what string, got, want [][]string) {
	t.Helper()
	for i := range want {
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("%s: session %d step %d: %q, want %q", what, i, j, got[i][j], want[i][j])
			}
		}
	}
}
