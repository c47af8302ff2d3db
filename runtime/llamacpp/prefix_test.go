package llamacpp_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// Greedy outputs with the prefix cache equal outputs without it on the real
// engine, across 50 sessions × 8 steps (each prompt extends the last one
// with its answer and a new page), with 8 slots so sessions' KV is evicted
// and rebuilt along the way.
func TestPrefixCacheOnRealEngine(t *testing.T) {
	const sessions, steps, slots = 50, 8, 8
	e := open(t, slots, 1024, 256)
	cfg := batching.Config{Slots: slots, QueueSize: 64, StepTokens: 256, CtxPerSlot: 1024}
	noCache := cfg
	noCache.NoPrefixCache = true
	want := runSessions(t, e, noCache, sessions, steps)
	got := runSessions(t, e, cfg, sessions, steps)
	sameTexts(t, "with reuse", got.outs, want.outs)
	if want.hits != 0 || got.hits < sessions*steps/2 || got.rebuilt == 0 {
		t.Fatalf("cache hits %d (without the cache %d), rebuilt after eviction %d", got.hits, want.hits, got.rebuilt)
	}
	t.Logf("%d of %d steps reused KV; %d rebuilt part of an evicted session", got.hits, sessions*steps, got.rebuilt)
}

// With four times more sessions than slots, the host tier saves the KV of
// a session whose slot another takes (llama_state_seq_get_data) and
// restores it at the session's next step (llama_state_seq_set_data, into
// whichever slot is free): greedy outputs equal a run without any cache,
// and the prompt tokens prefilled fall well below the slots' cache alone.
func TestHostTierOnRealEngine(t *testing.T) {
	const sessions, steps, slots = 16, 5, 4
	e := open(t, slots, 1024, 256)
	cfg := batching.Config{Slots: slots, QueueSize: 64, StepTokens: 256, CtxPerSlot: 1024}
	noCache := cfg
	noCache.NoPrefixCache = true
	want := runSessions(t, e, noCache, sessions, steps)
	slotsOnly := runSessions(t, e, cfg, sessions, steps)
	sameTexts(t, "slots' cache", slotsOnly.outs, want.outs)
	withHost := cfg
	withHost.HostKVBudget = 256 << 20
	got := runSessions(t, e, withHost, sessions, steps)
	sameTexts(t, "host tier", got.outs, want.outs)
	h := got.stats.Host
	if h.Restores == 0 || h.Saves == 0 || got.prefill*2 > slotsOnly.prefill {
		t.Fatalf("host tier %+v: %d prompt tokens prefilled, %d with the slots' cache alone, %d without a cache",
			h, got.prefill, slotsOnly.prefill, want.prefill)
	}
	t.Logf("prefilled %d prompt tokens with the host tier, %d with the slots' cache alone, %d without a cache; %+v",
		got.prefill, slotsOnly.prefill, want.prefill, h)
}

// sessionsResult is what runSessions saw.
type sessionsResult struct {
	outs [][]string
	// hits: steps that reused KV; rebuilt: steps that reused less than
	// their session's previous prompt; prefill: prompt tokens computed.
	hits, rebuilt, prefill int
	stats                  batching.Stats
}

// runSessions steps sessions concurrently on e (each its steps in order,
// each prompt its last one plus the answer and a new page) and reports the
// answers and the reuse.
func runSessions(t *testing.T, e *llamacpp.Engine, cfg batching.Config, sessions, steps int) sessionsResult {
	t.Helper()
	pageTok := func(s, st int) []int32 {
		toks, err := e.Tokenize(fmt.Sprintf(" <page %d of shopper %d: %s>", st, s, strings.Repeat("item ", 2+st%3)), false)
		if err != nil {
			t.Fatal(err)
		}
		return toks
	}
	system, _ := e.Tokenize("You are a shopper on a store; say what you do next on each page.", false)
	for i := range cfg.Slots { // a scheduler starts from an empty KV: drop what an earlier run left resident
		if err := e.ClearSeq(int32(i)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := batching.New(e, e, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	r := sessionsResult{outs: make([][]string, sessions)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for si := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prompt := append([]int32(nil), system...)
			prevLen := 0
			for st := range steps {
				prompt = append(prompt, pageTok(si, st)...)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				h, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: 6})
				if err != nil {
					cancel()
					t.Error(err)
					return
				}
				c, err := h.Wait(ctx)
				cancel()
				if err != nil || c.Err != nil {
					t.Errorf("wait: %v %v", err, c.Err)
					return
				}
				r.outs[si] = append(r.outs[si], c.Text)
				mu.Lock()
				if c.Usage.CachedTokens > 0 {
					r.hits++
				}
				if st > 0 && c.Usage.CachedTokens < prevLen {
					r.rebuilt++
				}
				r.prefill += len(prompt) - c.Usage.CachedTokens
				mu.Unlock()
				prevLen = len(prompt)
				ans, _ := e.Tokenize(c.Text, false)
				prompt = append(prompt, ans...)
			}
		}()
	}
	wg.Wait()
	r.stats = s.Stats()
	return r
}

// sameTexts fails the test at the first answer that differs.
func sameTexts(t *testing.T, what string, got, want [][]string) {
	t.Helper()
	for i := range want {
		for j := range want[i] {
			if j >= len(got[i]) || got[i][j] != want[i][j] {
				t.Fatalf("%s: session %d step %d differs from a run without the cache (%q)", what, i, j, want[i][j])
			}
		}
	}
}

// On the real engine, a request sharing only the system prompt with a long
// idle session gets a copy of that prefix in an empty slot (llama.cpp's
// whole-sequence copy, then a trim), the session keeps its KV for its next
// step, and every output equals a run without the cache.
func TestPrefixCacheCopyFromIdleOnRealEngine(t *testing.T) {
	e := open(t, 2, 1024, 256)
	tok := func(s string) []int32 {
		toks, err := e.Tokenize(s, false)
		if err != nil {
			t.Fatal(err)
		}
		return toks
	}
	system := tok("You are a shopper on a store; say what you do next on each page.")
	session := append(append([]int32(nil), system...), tok(strings.Repeat(" <page of shopper 1: item item item>", 6))...)
	other := append(append([]int32(nil), system...), tok(" <page of shopper 2: shoes>")...)
	run := func(noCache bool) (texts []string, cached []int) {
		s, err := batching.New(e, e, batching.Config{Slots: 2, QueueSize: 4, StepTokens: 256, CtxPerSlot: 1024, NoPrefixCache: noCache}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close(context.Background()) }()
		step := func(prompt []int32) string {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			h, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: 6})
			if err != nil {
				t.Fatal(err)
			}
			c, err := h.Wait(ctx)
			if err != nil || c.Err != nil {
				t.Fatalf("wait: %v %v", err, c.Err)
			}
			texts, cached = append(texts, c.Text), append(cached, c.Usage.CachedTokens)
			return c.Text
		}
		answer := step(session)
		step(other)
		step(append(append(append([]int32(nil), session...), tok(answer)...), tok(" <page of shopper 1: cart>")...))
		return texts, cached
	}
	want, _ := run(true)
	got, cached := run(false)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("request %d: with reuse %q, without %q", i, got[i], want[i])
		}
	}
	if cached[1] < len(system) || cached[2] < len(session) {
		t.Fatalf("cached tokens %v: want the system prompt (%d) for the other shopper and the whole session (%d) for its next step",
			cached, len(system), len(session))
	}
}
