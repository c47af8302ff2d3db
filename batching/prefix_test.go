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
	plain := hashModel(false)
	want, cachedOff := run(plain.Engine(), plain, true)
	re := hashModel(false)
	got, cachedOn := run(re.Reuser(), re, false)
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
	m := hashModel(false)
	s, err := batching.New(m.Reuser(), m, batching.Config{Slots: 1, QueueSize: 4, StepTokens: 16, CtxPerSlot: 512}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	p := prompt(strings.Repeat("same prompt ", 4))
	a := run(t, s, batching.Request{Prompt: p, MaxTokens: 5})
	// The slot keeps the prompt and the 4 generated tokens that were fed
	// (the last one sampled never is).
	if got := s.Stats().IdleResidentTokens; got != len(p)+4 {
		t.Fatalf("idle resident tokens %d after the first run, want %d", got, len(p)+4)
	}
	b := run(t, s, batching.Request{Prompt: p, MaxTokens: 5})
	if a.Text != b.Text || b.Usage.CachedTokens != len(p)-1 {
		t.Fatalf("second run %q cached %d, first %q (prompt %d)", b.Text, b.Usage.CachedTokens, a.Text, len(p))
	}
	if got := s.Stats().IdleResidentTokens; got != len(p)+4 {
		t.Fatalf("idle resident tokens %d after the second run, want %d", got, len(p)+4)
	}
}

// A request sharing a long prefix with a running one starts from a copy of
// the running sequence's KV, and its output is unchanged.
func TestPrefixCacheCopiesFromRunning(t *testing.T) {
	t.Parallel()
	shared := strings.Repeat("a shared system prompt for every shopper ", 3)
	want := func() string {
		m := hashModel(false)
		s, err := batching.New(m.Engine(), m, batching.Config{Slots: 1, QueueSize: 4, StepTokens: 16, CtxPerSlot: 1024, NoPrefixCache: true}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close(context.Background()) }()
		return run(t, s, batching.Request{Prompt: prompt(shared + "then B"), MaxTokens: 8}).Text
	}()
	m := hashModel(false)
	r := m.Reuser()
	slowed(r.Engine, time.Millisecond)
	s, err := batching.New(r, m, batching.Config{Slots: 2, QueueSize: 4, StepTokens: 16, CtxPerSlot: 1024}, zaptest.NewLogger(t))
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

// openingConstraint forces "AB" at the start, then allows anything and is
// done after three sampled tokens.
type openingConstraint struct {
	started bool
	n       int
}

func (c *openingConstraint) Mask([]float32, int) error { return nil }
func (c *openingConstraint) MinTokens() int            { return 5 }
func (c *openingConstraint) Done() bool                { return c.n >= 3 }
func (c *openingConstraint) Accept(int32) (bool, error) {
	c.n++
	return c.n >= 3, nil
}
func (c *openingConstraint) Forced() []int32 {
	if c.started {
		return nil
	}
	c.started = true
	return []int32{'A', 'B'}
}

// Text a grammar forces at the start goes out with the first sampled token,
// so the first text a client sees marks the end of prefill (TTFT).
func TestForcedOpeningWaitsForFirstToken(t *testing.T) {
	t.Parallel()
	m, gate := hashModel(true), make(chan struct{})
	s, err := batching.New(gated(m.Engine(), gate), m, batching.Config{Slots: 1, QueueSize: 4, StepTokens: 16, CtxPerSlot: 256}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	h, err := s.Submit(context.Background(), batching.Request{Prompt: prompt("hello"), MaxTokens: 10, Constraint: &openingConstraint{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	c, err := h.Next(ctx)
	cancel()
	if err == nil {
		t.Fatalf("text %q before the prompt was read", c.Text)
	}
	close(gate)
	c, err = h.Next(context.Background())
	if err != nil || !strings.HasPrefix(c.Text, "AB") || len(c.Text) < 3 {
		t.Fatalf("first chunk %q (%v), want the opening and a sampled token", c.Text, err)
	}
	if c, _ = h.Wait(context.Background()); c.Usage.CompletionTokens != 5 {
		t.Fatalf("usage %+v, want 2 forced + 3 sampled", c.Usage)
	}
}

// A request that shares only a system prompt with a long idle session
// takes a copy of the prefix into another slot instead of trimming the
// session's KV in place, so the session's next step still finds all of
// it; ties between idle slots go to the least recently used.
func TestPrefixCacheKeepsLongSessionWhole(t *testing.T) {
	t.Parallel()
	m := hashModel(false)
	s, err := batching.New(m.Reuser(), m, batching.Config{Slots: 2, QueueSize: 4, StepTokens: 64, CtxPerSlot: 2048}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	system := "system: you are a shopper on a store. "
	session := system + strings.Repeat("a long history of pages and actions. ", 8)
	first := run(t, s, batching.Request{Prompt: prompt(session), MaxTokens: 4})
	other := run(t, s, batching.Request{Prompt: prompt(system + "Different shopper"), MaxTokens: 4})
	if other.Usage.CachedTokens != len(system) {
		t.Fatalf("other shopper reused %d tokens, want the system prompt's %d", other.Usage.CachedTokens, len(system))
	}
	next := session + first.Text + " the next page"
	if got := run(t, s, batching.Request{Prompt: prompt(next), MaxTokens: 4}); got.Usage.CachedTokens < len(session) {
		t.Fatalf("the session's next step reused %d tokens, want at least %d: its KV was cut", got.Usage.CachedTokens, len(session))
	}
}
