package batching_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/batching"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestDecide(t *testing.T) {
	t.Parallel()
	idle := batching.Load{Slots: 4, QueueSize: 8, CapacityTokens: 4 * 1000}
	busy := idle
	busy.Running, busy.Waiting, busy.ReservedTokens = 4, 2, 4*500
	full := busy
	full.Waiting = 8
	fresh := batching.GPUSample{At: t0, Devices: []batching.GPUDevice{{MemoryUsed: 10, MemoryTotal: 100}}}
	memFull := batching.GPUSample{At: t0, Devices: []batching.GPUDevice{{MemoryUsed: 10, MemoryTotal: 100}, {MemoryUsed: 97, MemoryTotal: 100}}}
	hot := batching.GPUSample{At: t0, Devices: []batching.GPUDevice{{MemoryUsed: 10, MemoryTotal: 100, ThermalThrottle: true}}}
	braked := batching.GPUSample{At: t0, Devices: []batching.GPUDevice{{MemoryUsed: 10, MemoryTotal: 100, PowerThrottle: true}}}
	stale := fresh
	stale.At = t0.Add(-time.Minute)
	cases := []struct {
		name  string
		cfg   batching.AdmissionConfig
		need  int
		load  batching.Load
		gpu   batching.GPUSample
		gpuOK bool
		want  batching.Decision
	}{
		{"idle admits", batching.AdmissionConfig{}, 100, idle, fresh, true, dec(batching.OutcomeAdmitted, batching.ReasonSlotFree)},
		{"busy queues", batching.AdmissionConfig{}, 100, busy, fresh, true, dec(batching.OutcomeQueued, batching.ReasonSlotsBusy)},
		{"full queue rejects", batching.AdmissionConfig{}, 100, full, fresh, true, dec(batching.OutcomeRejected, batching.ReasonQueueFull)},
		{"KV reservation over the overcommit", batching.AdmissionConfig{KVOvercommit: 1}, 2001, busy, fresh, true, dec(batching.OutcomeRejected, batching.ReasonKVFull)},
		{"KV reservation at the overcommit", batching.AdmissionConfig{KVOvercommit: 1}, 2000, busy, fresh, true, dec(batching.OutcomeQueued, batching.ReasonSlotsBusy)},
		{"memory full rejects long", batching.AdmissionConfig{}, 2000, idle, memFull, true, dec(batching.OutcomeRejected, batching.ReasonGPUMemory)},
		{"memory full admits short", batching.AdmissionConfig{}, 1024, idle, memFull, true, dec(batching.OutcomeAdmitted, batching.ReasonSlotFree)},
		{"memory full queues short", batching.AdmissionConfig{}, 100, busy, memFull, true, dec(batching.OutcomeQueued, batching.ReasonSlotsBusy)},
		{"memory below a raised mark", batching.AdmissionConfig{GPUMemoryHighWater: 0.99}, 2000, idle, memFull, true, dec(batching.OutcomeAdmitted, batching.ReasonSlotFree)},
		{"thermal throttle rejects waiting", batching.AdmissionConfig{}, 100, busy, hot, true, dec(batching.OutcomeRejected, batching.ReasonGPUThrottled)},
		{"power brake rejects waiting", batching.AdmissionConfig{}, 100, busy, braked, true, dec(batching.OutcomeRejected, batching.ReasonGPUThrottled)},
		{"throttle still fills a free slot", batching.AdmissionConfig{}, 100, idle, hot, true, dec(batching.OutcomeAdmitted, batching.ReasonSlotFree)},
		{"throttle ignored", batching.AdmissionConfig{IgnoreThrottle: true}, 100, busy, hot, true, dec(batching.OutcomeQueued, batching.ReasonSlotsBusy)},
		{"stale counts as saturated", batching.AdmissionConfig{}, 100, busy, stale, true, dec(batching.OutcomeRejected, batching.ReasonGPUStale)},
		{"stale within a longer limit", batching.AdmissionConfig{StaleAfter: 2 * time.Minute}, 100, busy, stale, true, dec(batching.OutcomeQueued, batching.ReasonSlotsBusy)},
		{"no telemetry: runtime signals only", batching.AdmissionConfig{}, 2000, busy, batching.GPUSample{Devices: memFull.Devices}, false, dec(batching.OutcomeQueued, batching.ReasonSlotsBusy)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.cfg.Decide(tc.need, tc.load, tc.gpu, tc.gpuOK, t0); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func dec(o batching.Outcome, reason string) batching.Decision {
	return batching.Decision{Outcome: o, Reason: reason}
}

func TestParsePriority(t *testing.T) {
	t.Parallel()
	for _, p := range []batching.Priority{batching.PriorityLow, batching.PriorityNormal, batching.PriorityHigh} {
		got, err := batching.ParsePriority(p.String())
		if err != nil || got != p {
			t.Errorf("%v: got %v, %v", p, got, err)
		}
	}
	if _, err := batching.ParsePriority("urgent"); err == nil {
		t.Error("urgent parsed")
	}
}

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
	decisions []batching.Decision
	reports   []batching.Report
}

func (r *recorder) Decided(d batching.Decision) {
	r.mu.Lock()
	r.decisions = append(r.decisions, d)
	r.mu.Unlock()
}

func (r *recorder) Finished(rep batching.Report) {
	r.mu.Lock()
	r.reports = append(r.reports, rep)
	r.mu.Unlock()
}

func (r *recorder) count(o batching.Outcome, reason string) int {
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

func overload(t *testing.T, err error, reason string) *batching.OverloadError {
	t.Helper()
	var oe *batching.OverloadError
	if !errors.As(err, &oe) || oe.Reason != reason || !errors.Is(err, batching.ErrOverloaded) {
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
	e := newFakeEngine()
	e.gate = make(chan struct{})
	rec := &recorder{}
	s := newSched(t, e, batching.Config{Slots: 1, QueueSize: 8, Observer: rec})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	order := []batching.Priority{
		batching.PriorityNormal, // takes the slot
		batching.PriorityLow, batching.PriorityNormal, batching.PriorityHigh,
		batching.PriorityLow, batching.PriorityHigh, batching.PriorityNormal,
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
	close(e.gate)
	for _, h := range hs {
		if _, err := h.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []string
	for _, r := range rec.reports {
		got = append(got, r.Priority.String())
	}
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
	e := newFakeEngine()
	e.gate = make(chan struct{})
	rec := &recorder{}
	s := newSched(t, e, batching.Config{Slots: 1, QueueSize: 2, Observer: rec})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	submit := func(p batching.Priority) (*batching.Handle, error) {
		return s.Submit(ctx, batching.Request{Prompt: prompt("p"), MaxTokens: 1, Priority: p})
	}
	var kept []*batching.Handle
	for _, p := range []batching.Priority{batching.PriorityLow, batching.PriorityLow} {
		h, err := submit(p)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, h)
	}
	waitFor(t, func() bool { return s.Stats().Running == 1 })
	newest, err := submit(batching.PriorityLow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := submit(batching.PriorityLow); !errors.Is(err, batching.ErrQueueFull) {
		t.Fatalf("equal priority: got %v, want ErrQueueFull", err)
	}
	high, err := submit(batching.PriorityHigh)
	if err != nil {
		t.Fatalf("high priority on a full queue of low ones: %v", err)
	}
	c, err := newest.Wait(ctx)
	if err != nil || c.Finish != batching.FinishRejected {
		t.Fatalf("preempted request: %+v %v", c, err)
	}
	overload(t, c.Err, batching.ReasonPreempted)
	close(e.gate)
	for _, h := range append(kept, high) {
		if c, err := h.Wait(ctx); err != nil || !finished(c) {
			t.Fatalf("kept request: %+v %v", c, err)
		}
	}
	if n := rec.count(batching.OutcomeRejected, batching.ReasonPreempted); n != 1 {
		t.Errorf("%d preempted decisions, want 1", n)
	}
}

// A request waiting longer than MaxQueueWait ends rejected at the next step.
func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	e := newFakeEngine()
	e.gate = make(chan struct{})
	clock := &fakeClock{t: t0}
	rec := &recorder{}
	s := newSched(t, e, batching.Config{Slots: 1, QueueSize: 4, Clock: clock.Now, Observer: rec,
		Admission: batching.AdmissionConfig{MaxQueueWait: 2 * time.Second}})
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
	e.gate <- struct{}{} // one step: not yet overdue
	if st := s.Stats(); st.Waiting != 1 {
		t.Fatalf("dropped before the maximum wait: %+v", st)
	}
	clock.Set(t0.Add(3 * time.Second))
	e.gate <- struct{}{}
	c, err := waiting.Wait(ctx)
	if err != nil || c.Finish != batching.FinishRejected {
		t.Fatalf("overdue request: %+v %v", c, err)
	}
	overload(t, c.Err, batching.ReasonQueueTimeout)
	close(e.gate)
	if c, err := running.Wait(ctx); err != nil || !finished(c) {
		t.Fatalf("running request: %+v %v", c, err)
	}
	if n := rec.count(batching.OutcomeRejected, batching.ReasonQueueTimeout); n != 1 {
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
	e := newFakeEngine()
	e.gate = make(chan struct{})
	s := newSched(t, e, batching.Config{Slots: 2, QueueSize: 8, CtxPerSlot: 100,
		Admission: batching.AdmissionConfig{KVOvercommit: 1.2}})
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
	overload(t, err, batching.ReasonKVFull)
	if st := s.Stats(); st.ReservedTokens != 200 || st.RunningReservedTokens != 150 || st.Waiting != 1 {
		t.Fatalf("stats after kv_full %+v", st)
	}
	bcancel()
	close(e.gate)
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
	e := newFakeEngine()
	e.noEOG = true
	e.delay = time.Millisecond
	clock := &fakeClock{t: t0}
	s := newSched(t, e, batching.Config{Slots: 1, QueueSize: 3, CtxPerSlot: 256, Clock: clock.Now})
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
	if oe := overload(t, err, batching.ReasonQueueFull); oe.RetryAfter != time.Second {
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
	if oe := overload(t, err, batching.ReasonQueueFull); oe.RetryAfter != 4*time.Second {
		t.Errorf("Retry-After %s, want 4s", oe.RetryAfter)
	}
	if st := s.Stats(); st.DrainRate < 1.1 || st.DrainRate > 1.12 {
		t.Errorf("drain rate %g, want 10/9", st.DrainRate)
	}
	clock.Set(t0.Add(30 * time.Second)) // a stall: nothing drained for a whole window
	_, err = s.Submit(ctx, batching.Request{Prompt: prompt("x"), MaxTokens: 1})
	if oe := overload(t, err, batching.ReasonQueueFull); oe.RetryAfter != 40*time.Second {
		t.Errorf("after a stall: Retry-After %s, want 4 x 10s", oe.RetryAfter)
	}
}

// fakeGPU is a settable GPUSignals.
type fakeGPU struct {
	mu     sync.Mutex
	sample batching.GPUSample
	ok     bool
}

func (g *fakeGPU) Snapshot() (batching.GPUSample, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sample, g.ok
}

// Submit consults the GPU signals: a throttled GPU refuses what would wait,
// with Retry-After; a stale sample counts as saturated.
func TestSubmitReadsGPUSignals(t *testing.T) {
	t.Parallel()
	e := newFakeEngine()
	e.gate = make(chan struct{})
	clock := &fakeClock{t: t0}
	gpu := &fakeGPU{ok: true, sample: batching.GPUSample{At: t0, Devices: []batching.GPUDevice{{MemoryUsed: 1, MemoryTotal: 2, ThermalThrottle: true}}}}
	rec := &recorder{}
	s := newSched(t, e, batching.Config{Slots: 1, QueueSize: 4, Clock: clock.Now, GPU: gpu, Observer: rec})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := s.Submit(ctx, batching.Request{Prompt: prompt("a"), MaxTokens: 1})
	if err != nil {
		t.Fatalf("throttled but a slot is free: %v", err)
	}
	_, err = s.Submit(ctx, batching.Request{Prompt: prompt("b"), MaxTokens: 1})
	overload(t, err, batching.ReasonGPUThrottled)

	gpu.mu.Lock()
	gpu.sample.Devices[0].ThermalThrottle = false
	gpu.mu.Unlock()
	clock.Set(t0.Add(time.Minute))
	_, err = s.Submit(ctx, batching.Request{Prompt: prompt("c"), MaxTokens: 1})
	overload(t, err, batching.ReasonGPUStale)

	gpu.mu.Lock()
	gpu.ok = false // telemetry gone: runtime signals alone
	gpu.mu.Unlock()
	h2, err := s.Submit(ctx, batching.Request{Prompt: prompt("d"), MaxTokens: 1})
	if err != nil {
		t.Fatalf("without telemetry: %v", err)
	}
	close(e.gate)
	for _, h := range []*batching.Handle{h, h2} {
		if _, err := h.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []struct {
		o      batching.Outcome
		reason string
	}{
		{batching.OutcomeAdmitted, batching.ReasonSlotFree},
		{batching.OutcomeRejected, batching.ReasonGPUThrottled},
		{batching.OutcomeRejected, batching.ReasonGPUStale},
		{batching.OutcomeQueued, batching.ReasonSlotsBusy},
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
	s := newSched(t, newFakeEngine(), batching.Config{Observer: rec})
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
	e := newFakeEngine()
	e.noEOG = true
	rec := &slowRecorder{}
	s := newSched(t, e, batching.Config{Slots: 1, QueueSize: 4, Observer: rec})
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
