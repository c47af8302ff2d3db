package batching_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// recorder is an Observer that keeps everything it is told.
type recorder struct {
	mu        sync.Mutex
	decisions []admission.Decision
	reports   []batching.Report
}

// finishOrder opens gate, waits for every handle, and names the finished
// requests in the order they finished.
func finishOrder(ctx context.Context, t *testing.T, gate chan struct{}, hs []*batching.Handle, rec *recorder, name func(batching.Report) string) []string {
	t.Helper()
	close(gate)
	for _, h := range hs {
		if _, err := h.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []string
	for _, r := range rec.reports {
		got = append(got, name(r))
	}
	return got
}

func (r *recorder) Decided(d admission.Decision) {
	r.mu.Lock()
	r.decisions = append(r.decisions, d)
	r.mu.Unlock()
}

func (r *recorder) Finished(rep batching.Report) {
	r.mu.Lock()
	r.reports = append(r.reports, rep)
	r.mu.Unlock()
}

func (r *recorder) count(o admission.Outcome, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, d := range r.decisions {
		if d.Outcome == o && d.Reason == reason {
			n++
		}
	}
	return n
}

func overload(t *testing.T, err error, reason string) *admission.OverloadError {
	t.Helper()
	var oe *admission.OverloadError
	if !errors.As(err, &oe) || oe.Reason != reason || !errors.Is(err, admission.ErrOverloaded) {
		t.Fatalf("got %v, want an overload error for %s", err, reason)
	}
	if oe.RetryAfter < time.Second || oe.RetryAfter%time.Second != 0 {
		t.Fatalf("Retry-After %s is not a whole number of seconds", oe.RetryAfter)
	}
	return oe
}

// Waiting requests start highest priority first, FIFO within a class.
func TestPriorityOrder(t *testing.T) {
	t.Parallel()
	m, gate := hashModel(true), make(chan struct{})
	rec := &recorder{}
	s := newSched(t, gated(m.Engine(), gate), m, batching.Config{Slots: 1, QueueSize: 8, Observer: rec})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	order := []admission.Priority{
		admission.PriorityNormal, // takes the slot
		admission.PriorityLow, admission.PriorityNormal, admission.PriorityHigh,
		admission.PriorityLow, admission.PriorityHigh, admission.PriorityNormal,
	}
	var hs []*batching.Handle
	for i, p := range order {
		h, err := s.Submit(ctx, batching.Request{Prompt: prompt(string(rune('a' + i))), MaxTokens: 1, Priority: p})
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
		if i == 0 {
			waitFor(t, func() bool { return s.Stats().Running == 1 })
		}
	}
	got := finishOrder(ctx, t, gate, hs, rec, func(r batching.Report) string { return r.Priority.String() })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"normal", "high", "high", "normal", "normal", "low", "low"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("finish order %v, want %v", got, want)
		}
	}
	// FIFO within a class: admission times of one class increase with
	// submission.
	for i := 1; i < len(rec.reports); i++ {
		a, b := rec.reports[i-1], rec.reports[i]
		if a.Priority == b.Priority && b.Timing.Submitted.Before(a.Timing.Submitted) {
			t.Errorf("class %v not FIFO", a.Priority)
		}
	}
}

// A full queue takes a higher-priority request in place of the newest
// lower-priority one, which ends rejected; equal priorities do not preempt.
func TestPreemptLowerPriority(t *testing.T) {
	t.Parallel()
	m, gate := hashModel(true), make(chan struct{})
	rec := &recorder{}
	s := newSched(t, gated(m.Engine(), gate), m, batching.Config{Slots: 1, QueueSize: 2, Observer: rec})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	submit := func(p admission.Priority) (*batching.Handle, error) {
		return s.Submit(ctx, batching.Request{Prompt: prompt("p"), MaxTokens: 1, Priority: p})
	}
	var kept []*batching.Handle
	for _, p := range []admission.Priority{admission.PriorityLow, admission.PriorityLow} {
		h, err := submit(p)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, h)
	}
	waitFor(t, func() bool { return s.Stats().Running == 1 })
	newest, err := submit(admission.PriorityLow)
	if err != nil {
		t.Fatal(err)
	}
	_, err = submit(admission.PriorityLow)
	overload(t, err, admission.ReasonQueueFull) // equal priority
	high, err := submit(admission.PriorityHigh)
	if err != nil {
		t.Fatalf("high priority on a full queue of low ones: %v", err)
	}
	c, err := newest.Wait(ctx)
	if err != nil || c.Finish != batching.FinishRejected {
		t.Fatalf("preempted request: %+v %v", c, err)
	}
	overload(t, c.Err, admission.ReasonPreempted)
	close(gate)
	for _, h := range append(kept, high) {
		if c, err := h.Wait(ctx); err != nil || !finished(c) {
			t.Fatalf("kept request: %+v %v", c, err)
		}
	}
	if n := rec.count(admission.OutcomeRejected, admission.ReasonPreempted); n != 1 {
		t.Errorf("%d preempted decisions, want 1", n)
	}
}

// A request waiting longer than MaxQueueWait ends rejected at the next step.
func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	m, gate := hashModel(true), make(chan struct{})
	clock := &fakeClock{t: t0}
	rec := &recorder{}
	s := newSched(t, gated(m.Engine(), gate), m, batching.Config{Slots: 1, QueueSize: 4, Clock: clock.Now, Observer: rec,
		Admission: admission.Config{MaxQueueWait: 2 * time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	running, err := s.Submit(ctx, batching.Request{Prompt: prompt("run"), MaxTokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Stats().Running == 1 })
	waiting, err := s.Submit(ctx, batching.Request{Prompt: prompt("wait"), MaxTokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(t0.Add(time.Second))
	gate <- struct{}{} // one step: not yet overdue
	if st := s.Stats(); st.Waiting != 1 {
		t.Fatalf("dropped before the maximum wait: %+v", st)
	}
	clock.Set(t0.Add(3 * time.Second))
	gate <- struct{}{}
	c, err := waiting.Wait(ctx)
	if err != nil || c.Finish != batching.FinishRejected {
		t.Fatalf("overdue request: %+v %v", c, err)
	}
	overload(t, c.Err, admission.ReasonQueueTimeout)
	close(gate)
	if c, err := running.Wait(ctx); err != nil || !finished(c) {
		t.Fatalf("running request: %+v %v", c, err)
	}
	if n := rec.count(admission.OutcomeRejected, admission.ReasonQueueTimeout); n != 1 {
		t.Errorf("%d queue_timeout decisions, want 1", n)
	}
	waitIdle(t, s)
	if st := s.Stats(); st.ReservedTokens != 0 || st.RunningReservedTokens != 0 {
		t.Errorf("reservations left: %+v", st)
	}
}

// Reserved tokens count prompt plus max_tokens, are released however a
// request ends, and bound admission by KVOvercommit.
func TestKVReservation(t *testing.T) {
	t.Parallel()
	m, gate := hashModel(true), make(chan struct{})
	s := newSched(t, gated(m.Engine(), gate), m, batching.Config{Slots: 2, QueueSize: 8, CtxPerSlot: 100,
		Admission: admission.Config{KVOvercommit: 1.2}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := s.Submit(ctx, batching.Request{Prompt: prompt("0123456789"), MaxTokens: 90}) // 100
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(ctx)
	b, err := s.Submit(bctx, batching.Request{Prompt: prompt("01234"), MaxTokens: 45}) // 50
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Stats().Running == 2 })
	st := s.Stats()
	if st.ReservedTokens != 150 || st.RunningReservedTokens != 150 || st.CapacityTokens != 200 || st.KVUsage() != 0.75 {
		t.Fatalf("stats %+v, KV usage %g", st, st.KVUsage())
	}
	c, err := s.Submit(ctx, batching.Request{Prompt: prompt("0123456789"), MaxTokens: 40}) // 50: 200 of 240
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Submit(ctx, batching.Request{Prompt: prompt("0123456789"), MaxTokens: 40}) // 250: over 240
	overload(t, err, admission.ReasonKVFull)
	if st := s.Stats(); st.ReservedTokens != 200 || st.RunningReservedTokens != 150 || st.Waiting != 1 {
		t.Fatalf("stats after kv_full %+v", st)
	}
	bcancel()
	close(gate)
	for _, h := range []*batching.Handle{a, b, c} {
		if _, err := h.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle(t, s)
	if st := s.Stats(); st.ReservedTokens != 0 || st.RunningReservedTokens != 0 {
		t.Fatalf("reservations left: %+v", st)
	}
}

// Retry-After is the time for the waiting requests ahead to drain at the
// measured rate; with nothing drained yet, one second; after a whole window
// with nothing drained, one request per window.
func TestRetryAfterFromDrainRate(t *testing.T) {
	t.Parallel()
	m := hashModel(false)
	clock := &fakeClock{t: t0}
	s := newSched(t, slowed(m.Engine(), time.Millisecond), m, batching.Config{Slots: 1, QueueSize: 3, CtxPerSlot: 256, Clock: clock.Now})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fill := func() (stop func()) {
		hctx, hcancel := context.WithCancel(ctx)
		var hs []*batching.Handle
		for range 4 { // one running for a long while, three waiting
			h, err := s.Submit(hctx, batching.Request{Prompt: prompt("long"), MaxTokens: 250})
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		waitFor(t, func() bool { st := s.Stats(); return st.Running == 1 && st.Waiting == 3 })
		return func() {
			hcancel()
			for _, h := range hs {
				_, _ = h.Wait(ctx)
			}
			waitIdle(t, s)
		}
	}
	stop := fill()
	_, err := s.Submit(ctx, batching.Request{Prompt: prompt("x"), MaxTokens: 1})
	if oe := overload(t, err, admission.ReasonQueueFull); oe.RetryAfter != time.Second {
		t.Errorf("cold start: Retry-After %s, want 1s", oe.RetryAfter)
	}
	stop() // 4 requests drained at t0

	clock.Set(t0.Add(time.Second))
	for range 6 {
		run(t, s, batching.Request{Prompt: prompt("q"), MaxTokens: 1})
	}
	clock.Set(t0.Add(9 * time.Second)) // 10 drained in 9 s of the window
	stop = fill()
	defer stop()
	_, err = s.Submit(ctx, batching.Request{Prompt: prompt("x"), MaxTokens: 1})
	// 3 waiting plus this one at 10/9 requests per second: 3.6 s.
	if oe := overload(t, err, admission.ReasonQueueFull); oe.RetryAfter != 4*time.Second {
		t.Errorf("Retry-After %s, want 4s", oe.RetryAfter)
	}
	if st := s.Stats(); st.DrainRate < 1.1 || st.DrainRate > 1.12 {
		t.Errorf("drain rate %g, want 10/9", st.DrainRate)
	}
	clock.Set(t0.Add(30 * time.Second)) // a stall: nothing drained for a whole window
	_, err = s.Submit(ctx, batching.Request{Prompt: prompt("x"), MaxTokens: 1})
	if oe := overload(t, err, admission.ReasonQueueFull); oe.RetryAfter != 40*time.Second {
		t.Errorf("after a stall: Retry-After %s, want 4 x 10s", oe.RetryAfter)
	}
}

// fakeGPU is a settable GPUSignals.
type fakeGPU struct {
	mu     sync.Mutex
	sample admission.GPUSample
	ok     bool
}

func (g *fakeGPU) Snapshot() (admission.GPUSample, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sample, g.ok
}

// Submit consults the GPU signals: a throttled GPU refuses what would wait,
// with Retry-After; a stale sample counts as saturated.
func TestSubmitReadsGPUSignals(t *testing.T) {
	t.Parallel()
	m, gate := hashModel(true), make(chan struct{})
	clock := &fakeClock{t: t0}
	gpu := &fakeGPU{ok: true, sample: admission.GPUSample{At: t0, Devices: []admission.GPUDevice{{MemoryUsed: 1, MemoryTotal: 2, ThermalThrottle: true}}}}
	rec := &recorder{}
	s := newSched(t, gated(m.Engine(), gate), m, batching.Config{Slots: 1, QueueSize: 4, Clock: clock.Now, GPU: gpu, Observer: rec})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := s.Submit(ctx, batching.Request{Prompt: prompt("a"), MaxTokens: 1})
	if err != nil {
		t.Fatalf("throttled but a slot is free: %v", err)
	}
	_, err = s.Submit(ctx, batching.Request{Prompt: prompt("b"), MaxTokens: 1})
	overload(t, err, admission.ReasonGPUThrottled)

	gpu.mu.Lock()
	gpu.sample.Devices[0].ThermalThrottle = false
	gpu.mu.Unlock()
	clock.Set(t0.Add(time.Minute))
	_, err = s.Submit(ctx, batching.Request{Prompt: prompt("c"), MaxTokens: 1})
	overload(t, err, admission.ReasonGPUStale)

	gpu.mu.Lock()
	gpu.ok = false // telemetry gone: runtime signals alone
	gpu.mu.Unlock()
	h2, err := s.Submit(ctx, batching.Request{Prompt: prompt("d"), MaxTokens: 1})
	if err != nil {
		t.Fatalf("without telemetry: %v", err)
	}
	close(gate)
	for _, h := range []*batching.Handle{h, h2} {
		if _, err := h.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []struct {
		o      admission.Outcome
		reason string
	}{
		{admission.OutcomeAdmitted, admission.ReasonSlotFree},
		{admission.OutcomeRejected, admission.ReasonGPUThrottled},
		{admission.OutcomeRejected, admission.ReasonGPUStale},
		{admission.OutcomeQueued, admission.ReasonSlotsBusy},
	} {
		if rec.count(want.o, want.reason) != 1 {
			t.Errorf("want one %s/%s decision, got %+v", want.o, want.reason, rec.decisions)
		}
	}
}

// The Observer gets timings of every finished request.
func TestObserverTiming(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	m := hashModel(true)
	s := newSched(t, m.Engine(), m, batching.Config{Observer: rec})
	c := run(t, s, batching.Request{Prompt: prompt("timing"), MaxTokens: 5})
	waitFor(t, func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.reports) == 1 })
	rec.mu.Lock()
	r := rec.reports[0]
	rec.mu.Unlock()
	tm := r.Timing
	if r.Usage != c.Usage || r.Finish != c.Finish {
		t.Errorf("report %+v, chunk %+v", r, c)
	}
	if tm.Submitted.IsZero() || tm.Admitted.Before(tm.Submitted) || tm.FirstToken.Before(tm.Admitted) || tm.Finished.Before(tm.FirstToken) {
		t.Errorf("timing out of order: %+v", tm)
	}
}

func finished(c batching.Chunk) bool {
	return c.Finish == batching.FinishStop || c.Finish == batching.FinishLength
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// slowRecorder takes its time to record a finished request.
type slowRecorder struct{ recorder }

func (r *slowRecorder) Finished(rep batching.Report) {
	time.Sleep(2 * time.Millisecond)
	r.recorder.Finished(rep)
}

// A caller that has read a request's last chunk finds it reported: the
// observer (metrics) runs before the end is visible.
func TestFinishedReportedBeforeCallerSeesEnd(t *testing.T) {
	t.Parallel()
	m := hashModel(false)
	rec := &slowRecorder{}
	s := newSched(t, m.Engine(), m, batching.Config{Slots: 1, QueueSize: 4, Observer: rec})
	for i := range 30 {
		h, err := s.Submit(context.Background(), batching.Request{Prompt: prompt("count me"), MaxTokens: 4})
		if err != nil {
			t.Fatal(err)
		}
		for {
			c, err := h.Next(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if c.Done {
				break
			}
		}
		rec.mu.Lock()
		n := len(rec.reports)
		rec.mu.Unlock()
		if n != i+1 {
			t.Fatalf("request %d ended with %d reports", i, n)
		}
	}
}

// A request's PriorWait (its wait for a model's load) is queue time: its
// reported submission is that much earlier, and it counts against the
// maximum queue wait, so a request that already waited that long is
// dropped as a queue timeout instead of waiting again.
func TestPriorWaitCountsAsQueueTime(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	m := hashModel(true)
	gate := make(chan struct{})
	s := newSched(t, gated(m.Engine(), gate), m, batching.Config{Slots: 1, QueueSize: 4, Observer: rec,
		Admission: admission.Config{MaxQueueWait: time.Second}})
	before := time.Now()
	running, err := s.Submit(context.Background(), batching.Request{Prompt: prompt("first"), MaxTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	late, err := s.Submit(context.Background(), batching.Request{Prompt: prompt("late"), MaxTokens: 2, PriorWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	close(gate)
	if c, _ := running.Wait(context.Background()); !finished(c) {
		t.Errorf("first request: %+v", c)
	}
	if c, _ := late.Wait(context.Background()); c.Finish != batching.FinishRejected {
		t.Errorf("a request that waited 2s for its model, over a 1s queue wait: %+v", c)
	}
	waitFor(t, func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.reports) == 2 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, r := range rec.reports {
		if r.Finish == batching.FinishRejected && !r.Timing.Submitted.Before(before.Add(-time.Second)) {
			t.Errorf("submission %s not moved back by its prior wait (before %s)", r.Timing.Submitted, before)
		}
	}
}
