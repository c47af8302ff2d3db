package batching_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
)

// sessionPrompts imitates shoppers: each step's prompt extends the last
// one's prompt and answer with a new page.
func sessionPrompts(sessions, steps int) [][]string {
	out := make([][]string, sessions)
	for s := range sessions {
		p := fmt.Sprintf("system: you are shopper %d. ", s%3) + strings.Repeat("page ", 4)
		for st := range steps {
			p += fmt.Sprintf("step %d page of session %d with items %s. ", st, s, strings.Repeat("x", st+3))
			out[s] = append(out[s], p)
		}
	}
	return out
}

// Greedy outputs with reuse equal outputs without reuse, across sessions
// stepped concurrently (reuse from idle slots and copies from running
// ones), and the reused prompt tokens are reported.
func TestPrefixCacheKeepsOutputs(t *testing.T) {
	t.Parallel()
	prompts := sessionPrompts(12, 6)
	run := func(e batching.Engine, vocab batching.Vocab, noCache bool) ([][]string, int) {
		s, err := batching.New(e, vocab, batching.Config{Slots: 4, QueueSize: 64, StepTokens: 32, CtxPerSlot: 4096, NoPrefixCache: noCache}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close(context.Background()) }()
		out := make([][]string, len(prompts))
		var cached int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, steps := range prompts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, p := range steps {
					c := run(t, s, batching.Request{Prompt: prompt(p), MaxTokens: 12})
					out[i] = append(out[i], c.Text)
					mu.Lock()
					cached += c.Usage.CachedTokens
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return out, cached
	}
	plain := newFakeEngine()
	plain.noEOG = true
	want, cachedOff := run(plain, plain, true)
	re := reusingEngine{newFakeEngine()}
	re.noEOG = true
	got, cachedOn := run(re, re, false)
	for i := range want {
		for j := range want[i] {
			if got[i][j] != want[i][j] {
				t.Fatalf("session %d step %d: with reuse %q, without %q", i, j, got[i][j], want[i][j])
			}
		}
	}
	if cachedOff != 0 || cachedOn == 0 {
		t.Fatalf("cached tokens: %d without the cache, %d with it", cachedOff, cachedOn)
	}
	t.Logf("cached %d prompt tokens", cachedOn)
}

// A request identical to a resident prefix still gets logits: at least one
// token is fed.
func TestPrefixCacheFullHit(t *testing.T) {
	t.Parallel()
	e := reusingEngine{newFakeEngine()}
	e.noEOG = true
	s, err := batching.New(e, e, batching.Config{Slots: 1, QueueSize: 4, StepTokens: 16, CtxPerSlot: 512}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	p := prompt(strings.Repeat("same prompt ", 4))
	a := run(t, s, batching.Request{Prompt: p, MaxTokens: 5})
	b := run(t, s, batching.Request{Prompt: p, MaxTokens: 5})
	if a.Text != b.Text || b.Usage.CachedTokens != len(p)-1 {
		t.Fatalf("second run %q cached %d, first %q (prompt %d)", b.Text, b.Usage.CachedTokens, a.Text, len(p))
	}
}

// A request sharing a long prefix with a running one starts from a copy of
// the running sequence's KV, and its output is unchanged.
func TestPrefixCacheCopiesFromRunning(t *testing.T) {
	t.Parallel()
	shared := strings.Repeat("a shared system prompt for every shopper ", 3)
	want := func() string {
		e := newFakeEngine()
		e.noEOG = true
		s, err := batching.New(e, e, batching.Config{Slots: 1, QueueSize: 4, StepTokens: 16, CtxPerSlot: 1024, NoPrefixCache: true}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close(context.Background()) }()
		return run(t, s, batching.Request{Prompt: prompt(shared + "then B"), MaxTokens: 8}).Text
	}()
	e := reusingEngine{newFakeEngine()}
	e.noEOG = true
	e.delay = time.Millisecond
	s, err := batching.New(e, e, batching.Config{Slots: 2, QueueSize: 4, StepTokens: 16, CtxPerSlot: 1024}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	a, err := s.Submit(context.Background(), batching.Request{Prompt: prompt(shared + "then A"), MaxTokens: 200})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Next(context.Background()); err != nil { // A is decoding
		t.Fatal(err)
	}
	b := run(t, s, batching.Request{Prompt: prompt(shared + "then B"), MaxTokens: 8})
	if b.Text != want || b.Usage.CachedTokens < len(shared) {
		t.Fatalf("B: %q cached %d, want %q and at least %d cached", b.Text, b.Usage.CachedTokens, want, len(shared))
	}
	a.Cancel()
}
