package batching_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/batching/batchingtest"
)

// modConstraint allows only the printable tokens that are multiples of
// mod, forces "--" after every fourth token, and completes after want
// tokens: a constraint with every optional extension (Allower, Forcer), so
// both rejection sampling and masking run. One per request.
type modConstraint struct {
	mod    int32
	want   int
	n      int
	forced []int32
}

func (c *modConstraint) allowed(t int32) bool { return t >= 32 && t < 127 && t%c.mod == 0 }

func (c *modConstraint) Mask(logits []float32, _ int) error {
	for i := range logits {
		if !c.allowed(int32(i)) {
			logits[i] = float32(math.Inf(-1))
		}
	}
	return nil
}

func (c *modConstraint) Allows(tok int32, _ int) bool { return c.allowed(tok) }

func (c *modConstraint) Accept(tok int32) (bool, error) {
	if !c.allowed(tok) {
		return false, fmt.Errorf("token %d not allowed", tok)
	}
	c.n++
	if c.n%4 == 0 {
		c.forced = []int32{'-', '-'}
	}
	return c.n >= c.want, nil
}

func (c *modConstraint) MinTokens() int { return c.want }

func (c *modConstraint) Forced() []int32 {
	f := c.forced
	c.forced = nil
	return f
}

func (c *modConstraint) Done() bool { return false }

// finishLog records the order in which requests end.
type finishLog struct {
	mu    sync.Mutex
	order []string
}

func (l *finishLog) Decided(admission.Decision) {}

func (l *finishLog) Finished(r batching.Report) {
	l.mu.Lock()
	l.order = append(l.order, fmt.Sprintf("%v/%+v", r.Finish, r.Usage))
	l.mu.Unlock()
}

// runAll submits every request once the first step is under way (a
// placeholder request holds the engine at its gate meanwhile), so each run
// admits them at the same step, and returns each output and the order in
// which they finished.
func runAll(t *testing.T, workers int, reqs func() []batching.Request) ([]string, []string) {
	t.Helper()
	m, gate := hashModel(true), make(chan struct{})
	log := &finishLog{}
	s, err := batching.New(gated(m.Engine(), gate), m, batching.Config{Slots: 8, QueueSize: 64, StepTokens: 24, CtxPerSlot: 256, SampleWorkers: workers, Observer: log}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	hold, err := s.Submit(ctx, batching.Request{Prompt: prompt("hold"), MaxTokens: 1})
	if err != nil {
		t.Fatal(err)
	}
	for s.Stats().Running == 0 { // the loop took it and waits at the gate
		time.Sleep(time.Millisecond)
	}
	rs := reqs()
	hs := make([]*batching.Handle, len(rs))
	for i, r := range rs {
		if hs[i], err = s.Submit(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	if _, err := hold.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(rs))
	for i, h := range hs {
		c, err := h.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = fmt.Sprintf("%q/%v/%v/%+v", c.Text, c.Finish, c.Err, c.Usage)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	return out, append([]string(nil), log.order...)
}

// Sampling many sequences in parallel gives exactly the tokens, the finish
// order and the usage that sampling them one after the other gives, for
// every sampling mode, with and without constraints (seeded).
func TestParallelSamplingMatchesSerial(t *testing.T) {
	t.Parallel()
	seed := func(x uint64) *uint64 { return &x }
	modes := []batching.Sampling{
		{},
		{Temperature: 5},
		{Temperature: 5, TopK: 10},
		{Temperature: 5, TopP: 0.5},
		{Temperature: 3, TopK: 50, TopP: 0.9},
	}
	texts := []string{"hello", "a longer prompt that needs a few chunks to prefill", "x", "shop for shoes"}
	reqs := func() []batching.Request {
		var rs []batching.Request
		for m, p := range modes {
			for k, tx := range texts {
				p.Seed = seed(uint64(100*m + k))
				rs = append(rs, batching.Request{Prompt: prompt(tx), MaxTokens: 30, Sampling: p})
				if k%2 == 0 {
					rs = append(rs, batching.Request{Prompt: prompt(tx), MaxTokens: 30, Sampling: p, Constraint: &modConstraint{mod: int32(2 + k), want: 20}})
				}
			}
		}
		return rs
	}
	serialOut, serialOrder := runAll(t, 1, reqs)
	distinct := map[string]bool{}
	for _, o := range serialOut {
		distinct[o] = true
	}
	if len(distinct) < len(serialOut)*3/4 {
		t.Fatalf("outputs barely differ across modes and seeds: %d distinct of %d", len(distinct), len(serialOut))
	}
	for _, w := range []int{2, 8} {
		out, order := runAll(t, w, reqs)
		for i := range out {
			if out[i] != serialOut[i] {
				t.Errorf("%d workers, request %d: %s, serial %s", w, i, out[i], serialOut[i])
			}
		}
		if fmt.Sprint(order) != fmt.Sprint(serialOrder) {
			t.Errorf("%d workers finished in order %v, serial %v", w, order, serialOrder)
		}
	}
}

// slowConstraint allows every token and takes its time to say so, so the
// workers of a step overlap in time; EOG completes the output.
type slowConstraint struct {
	eog   int32
	delay time.Duration
}

func (c slowConstraint) Mask([]float32, int) error { return nil }

func (c slowConstraint) Allows(int32, int) bool {
	time.Sleep(c.delay)
	return true
}

func (c slowConstraint) Accept(tok int32) (bool, error) { return tok == c.eog, nil }

func (c slowConstraint) MinTokens() int { return 0 }

// The engine's logits are views that the next Decode overwrites in place
// (the kit's model does, like llama.cpp). Sixteen requests on eight slots,
// sampled on four workers, give exactly the outputs computed without a
// scheduler: a row read after the next Decode (a worker still running when
// the loop moves on, a view kept for later) gives another step's token, and
// under -race the overlapping read and write fail the run.
func TestLogitsViewsDieWithTheirStep(t *testing.T) {
	t.Parallel()
	m := hashModel(true)
	s := newSched(t, m.Engine(), m, batching.Config{Slots: 8, StepTokens: 20, SampleWorkers: 4})
	var texts []string
	for i := range 16 {
		texts = append(texts, fmt.Sprintf("request %d %s", i, string(rune('a'+i))))
	}
	got := make([]batching.Chunk, len(texts))
	var wg sync.WaitGroup
	for i, tx := range texts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := batching.Request{Prompt: prompt(tx), MaxTokens: 40}
			if i%2 == 1 { // slow to sample: workers overlap
				r.Constraint = slowConstraint{eog: testEOG, delay: 200 * time.Microsecond}
			}
			got[i] = run(t, s, r)
		}()
	}
	wg.Wait()
	for i, tx := range texts {
		if want := batchingtest.HashGreedy(testEOG, testVocab, prompt(tx), 40); got[i].Text != want {
			t.Errorf("request %d: %q, want %q", i, got[i].Text, want)
		}
	}
}
