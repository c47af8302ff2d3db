package batching_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSched(t *testing.T, e batching.Engine, v batching.Vocab, cfg batching.Config) *batching.Scheduler {
	t.Helper()
	if cfg.Slots == 0 {
		cfg.Slots = 4
	}
	if cfg.StepTokens == 0 {
		cfg.StepTokens = 16
	}
	if cfg.CtxPerSlot == 0 {
		cfg.CtxPerSlot = 256
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 64
	}
	s, err := batching.New(e, v, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func prompt(s string) []int32 {
	p := make([]int32, len(s))
	for i := range s {
		p[i] = int32(s[i])
	}
	return p
}

func run(t *testing.T, s *batching.Scheduler, req batching.Request) batching.Chunk {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := s.Submit(ctx, req)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	c, err := h.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return c
}

func waitIdle(t *testing.T, s *batching.Scheduler) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if st := s.Stats(); st.Running == 0 && st.Waiting == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("scheduler not idle: %+v", s.Stats())
}

// Greedy output must not depend on what else shares the steps: the fake
// engine's next token hashes the whole history, so a wrong position or
// sequence id anywhere changes the text.
func TestBatchedEqualsAlone(t *testing.T) {
	t.Parallel()
	prompts := []string{"hello", "a much longer prompt that needs several chunks to prefill", "hello", "x", "shop for shoes", "hello", "checkout now please", "y"}
	alone := make([]batching.Chunk, len(prompts))
	for i, p := range prompts {
		m := hashModel(true)
		s := newSched(t, m.Engine(), m, batching.Config{Slots: 1, StepTokens: 8})
		alone[i] = run(t, s, batching.Request{Prompt: prompt(p), MaxTokens: 40})
	}
	m := hashModel(true)
	s := newSched(t, slowed(m.Engine(), time.Millisecond), m, batching.Config{Slots: 8, StepTokens: 12})
	got := make([]batching.Chunk, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 3 * time.Millisecond) // join while others decode
			got[i] = run(t, s, batching.Request{Prompt: prompt(p), MaxTokens: 40})
		}()
	}
	wg.Wait()
	for i := range prompts {
		if got[i].Text != alone[i].Text || got[i].Finish != alone[i].Finish || got[i].Usage != alone[i].Usage {
			t.Errorf("prompt %d: batched %q/%v/%+v, alone %q/%v/%+v", i, got[i].Text, got[i].Finish, got[i].Usage, alone[i].Text, alone[i].Finish, alone[i].Usage)
		}
	}
	multi := false
	for _, b := range m.Batches() {
		seen := map[int32]bool{}
		for _, q := range b {
			seen[q] = true
		}
		if len(seen) > 1 {
			multi = true
		}
		if len(b) > 12 {
			t.Fatalf("step of %d tokens exceeds the budget of 12", len(b))
		}
	}
	if !multi {
		t.Fatal("no step carried more than one sequence")
	}
	waitIdle(t, s)
	if m.Held() != 0 {
		t.Fatalf("engine still holds %d sequences", m.Held())
	}
}

func TestMaxTokensAndUsage(t *testing.T) {
	t.Parallel()
	m := hashModel(true)
	s := newSched(t, m.Engine(), m, batching.Config{})
	c := run(t, s, batching.Request{Prompt: prompt("abc"), MaxTokens: 3})
	if c.Usage.PromptTokens != 3 || c.Usage.CompletionTokens > 3 {
		t.Fatalf("usage %+v", c.Usage)
	}
	if c.Finish == batching.FinishLength && c.Usage.CompletionTokens != 3 {
		t.Fatalf("length finish after %d tokens", c.Usage.CompletionTokens)
	}
}

func TestStopString(t *testing.T) {
	t.Parallel()
	m := hashModel(true)
	s := newSched(t, m.Engine(), m, batching.Config{})
	full := run(t, s, batching.Request{Prompt: prompt("stop test"), MaxTokens: 30})
	if len(full.Text) < 6 {
		t.Skipf("fake output too short to cut: %q", full.Text)
	}
	stop := full.Text[3:5]
	c := run(t, s, batching.Request{Prompt: prompt("stop test"), MaxTokens: 30, Stop: []string{stop}})
	want := full.Text[:strings.Index(full.Text, stop)]
	if c.Text != want || c.Finish != batching.FinishStop {
		t.Fatalf("got %q (%v), want %q stop", c.Text, c.Finish, want)
	}
}

func TestRejectsBadRequests(t *testing.T) {
	t.Parallel()
	m := hashModel(true)
	s := newSched(t, m.Engine(), m, batching.Config{CtxPerSlot: 16})
	cases := []struct {
		name  string
		req   batching.Request
		field string
	}{
		{"empty prompt", batching.Request{}, "prompt"},
		{"prompt fills context", batching.Request{Prompt: make([]int32, 16)}, "prompt"},
		{"over context", batching.Request{Prompt: make([]int32, 10), MaxTokens: 7}, "max_tokens"},
		{"token outside vocab", batching.Request{Prompt: []int32{1, 9999}}, "prompt"},
		{"negative token", batching.Request{Prompt: []int32{-1}}, "prompt"},
		{"bad top_p", batching.Request{Prompt: []int32{1}, Sampling: batching.Sampling{TopP: 2}}, "top_p"},
		{"empty stop", batching.Request{Prompt: []int32{1}, Stop: []string{""}}, "stop"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Submit(context.Background(), tc.req)
			var re *batching.RequestError
			if !errors.As(err, &re) || re.Field != tc.field {
				t.Fatalf("got %v, want a RequestError on %s", err, tc.field)
			}
		})
	}
}

func TestQueueFullRejectsAtOnce(t *testing.T) {
	t.Parallel()
	m, gate := hashModel(true), make(chan struct{})
	s := newSched(t, gated(m.Engine(), gate), m, batching.Config{Slots: 1, QueueSize: 2, StepTokens: 4})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handles []*batching.Handle
	for range 3 { // one running, two waiting
		h, err := s.Submit(ctx, batching.Request{Prompt: prompt("q"), MaxTokens: 2})
		if err != nil {
			t.Fatal(err)
		}
		handles = append(handles, h)
	}
	start := time.Now()
	_, err := s.Submit(ctx, batching.Request{Prompt: prompt("q"), MaxTokens: 2})
	overload(t, err, admission.ReasonQueueFull)
	if time.Since(start) > time.Second {
		t.Fatal("a full queue blocked")
	}
	close(gate)
	for _, h := range handles {
		if c, err := h.Wait(ctx); err != nil || !c.Done {
			t.Fatalf("wait: %v %+v", err, c)
		}
	}
}

func TestCancelFreesSlot(t *testing.T) {
	t.Parallel()
	m := hashModel(false)
	s := newSched(t, m.Engine(), m, batching.Config{Slots: 1, CtxPerSlot: 100000})
	h, err := s.Submit(context.Background(), batching.Request{Prompt: prompt("long"), MaxTokens: 90000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Next(context.Background()); err != nil { // it is decoding
		t.Fatal(err)
	}
	h.Cancel()
	c, err := h.Wait(context.Background())
	if err != nil || c.Finish != batching.FinishCancelled {
		t.Fatalf("got %+v %v, want cancelled", c, err)
	}
	waitIdle(t, s)
	if got := run(t, s, batching.Request{Prompt: prompt("next"), MaxTokens: 3}); !got.Done {
		t.Fatal("next request not served")
	}
	if m.Held() != 0 {
		t.Fatalf("engine still holds %d sequences", m.Held())
	}
}

func TestEngineErrorFailsBatchAndLoopGoesOn(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"error", "panic"} {
		t.Run(mode, func(t *testing.T) {
			m := hashModel(true)
			e := m.Engine()
			var failed atomic.Bool
			e.DecodeFunc = func(b *batching.Batch) error {
				if failed.CompareAndSwap(false, true) {
					if mode == "panic" {
						panic("engine bug")
					}
					return errors.New("boom")
				}
				return m.Decode(b)
			}
			s := newSched(t, e, m, batching.Config{Slots: 2})
			h, err := s.Submit(context.Background(), batching.Request{Prompt: prompt("fail me"), MaxTokens: 5})
			if err != nil {
				t.Fatal(err)
			}
			c, _ := h.Wait(context.Background())
			if c.Finish != batching.FinishError || c.Err == nil {
				t.Fatalf("got %+v, want an engine error", c)
			}
			if got := run(t, s, batching.Request{Prompt: prompt("then"), MaxTokens: 3}); got.Finish == batching.FinishError {
				t.Fatalf("loop did not recover: %+v", got)
			}
		})
	}
}

func TestCloseDrainsInFlight(t *testing.T) {
	t.Parallel()
	m := hashModel(true)
	s, err := batching.New(m.Engine(), m, batching.Config{Slots: 2, QueueSize: 4, StepTokens: 8, CtxPerSlot: 256}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var hs []*batching.Handle
	for range 4 {
		h, err := s.Submit(context.Background(), batching.Request{Prompt: prompt("drain"), MaxTokens: 20})
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		c, _ := h.Wait(context.Background())
		if c.Finish != batching.FinishStop && c.Finish != batching.FinishLength {
			t.Fatalf("in-flight request ended %v", c.Finish)
		}
	}
	if _, err := s.Submit(context.Background(), batching.Request{Prompt: prompt("late")}); !errors.Is(err, batching.ErrClosed) {
		t.Fatalf("submit after close: %v", err)
	}
}

func TestCloseTimeoutEndsTheRest(t *testing.T) {
	t.Parallel()
	m := hashModel(false)
	s, err := batching.New(m.Engine(), m, batching.Config{Slots: 1, QueueSize: 4, StepTokens: 8, CtxPerSlot: 1 << 20}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Submit(context.Background(), batching.Request{Prompt: prompt("forever"), MaxTokens: 1<<20 - 100})
	if err != nil {
		t.Fatal(err)
	}
	queued, err := s.Submit(context.Background(), batching.Request{Prompt: prompt("waiting")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("close: %v", err)
	}
	for _, hh := range []*batching.Handle{h, queued} {
		c, _ := hh.Wait(context.Background())
		if c.Finish != batching.FinishShutdown {
			t.Fatalf("ended %v, want shutdown", c.Finish)
		}
	}
}

// An engine error that names one sequence (a *SeqError: the engine
// evaluated nothing) fails that sequence alone; its step-mate runs again at
// the next step and finishes as it would have alone. The real engine cannot
// stage this once the scheduler checks positions itself, hence the fake.
func TestSeqErrorFailsOnlyThatSequence(t *testing.T) {
	t.Parallel()
	m := hashModel(false)
	e := slowed(m.Engine(), 5*time.Millisecond) // mate is still decoding when bad joins
	var refuse atomic.Int32
	refuse.Store(-1)
	slowDecode := e.DecodeFunc
	e.DecodeFunc = func(b *batching.Batch) error {
		if seq := refuse.Load(); seq >= 0 && slices.Contains(b.Seq, seq) {
			refuse.Store(-1)
			return &batching.SeqError{Seq: seq, Err: errors.New("position out of range")}
		}
		return slowDecode(b)
	}
	s := newSched(t, e, m, batching.Config{Slots: 2})
	want := run(t, s, batching.Request{Prompt: prompt("mate"), MaxTokens: 6})
	waitIdle(t, s)
	ctx := context.Background()
	mate, err := s.Submit(ctx, batching.Request{Prompt: prompt("mate"), MaxTokens: 6})
	if err != nil {
		t.Fatal(err)
	}
	// The engine refuses the first step that carries the second slot.
	refuse.Store(1)
	bad, err := s.Submit(ctx, batching.Request{Prompt: prompt("bad"), MaxTokens: 6})
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := bad.Wait(ctx)
	mc, _ := mate.Wait(ctx)
	if bc.Finish != batching.FinishError || !errors.As(bc.Err, new(*batching.SeqError)) {
		t.Errorf("named sequence: %+v, want FinishError with the SeqError", bc)
	}
	if mc.Finish != want.Finish || mc.Text != want.Text || mc.Err != nil {
		t.Errorf("step-mate: %+v, want %+v as alone", mc, want)
	}
}
