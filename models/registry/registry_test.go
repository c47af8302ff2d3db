package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/models/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const minute = time.Minute

func spec(id string, gpu int64, keepAlive time.Duration) registry.Spec {
	return registry.Spec{ID: id, Memory: registry.Memory{GPU: gpu, Host: 1}, KeepAlive: keepAlive, Source: "test"}
}

type harness struct {
	t      *testing.T
	reg    *registry.Registry
	loader *fakeLoader
	clock  *fakeClock
}

func newHarness(t *testing.T, budget registry.Memory, specs ...registry.Spec) *harness {
	t.Helper()
	h := &harness{t: t, loader: newFakeLoader(budget), clock: newFakeClock()}
	reg, err := registry.New(registry.Config{Budget: budget}, specs, registry.Deps{Loader: h.loader.load, Clock: h.clock, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	h.reg = reg
	t.Cleanup(func() {
		h.loader.closing.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.Close(ctx); err != nil {
			t.Error(err)
		}
		h.loader.check(t)
	})
	return h
}

func (h *harness) acquire(id string) *registry.Lease {
	h.t.Helper()
	l, err := h.reg.Acquire(context.Background(), id)
	if err != nil {
		h.t.Fatalf("Acquire(%s): %v", id, err)
	}
	l.Instance().(*fakeInstance).inUse.Add(1)
	return l
}

func (h *harness) release(l *registry.Lease) {
	l.Instance().(*fakeInstance).inUse.Add(-1)
	l.Release()
}

func (h *harness) state(id string) string {
	st, ok := h.reg.Get(id)
	if !ok {
		h.t.Fatalf("no model %s", id)
	}
	return st.State
}

func (h *harness) waitState(id, want string) {
	h.t.Helper()
	waitFor(h.t, id+" "+want, func() bool { return h.state(id) == want })
}

// A model loads on first use; later and concurrent requests share the
// instance; released, it stays loaded for its keep_alive.
func TestAcquireLoadsOnceAndShares(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 100}, spec("a", 10, 5*minute), spec("b", 10, 5*minute))
	if st, _ := h.reg.Get("a"); st.Loaded || st.State != "unloaded" {
		t.Fatalf("before use: %+v", st)
	}
	l1 := h.acquire("a")
	l2 := h.acquire("a")
	if l1.Instance() != l2.Instance() {
		t.Fatal("two instances of one model")
	}
	if loads, _ := h.loader.counts("a"); loads != 1 {
		t.Fatalf("%d loads", loads)
	}
	st, _ := h.reg.Get("a")
	if !st.Loaded || st.Leases != 2 || !st.ExpiresAt.IsZero() {
		t.Fatalf("in use: %+v", st)
	}
	h.release(l1)
	h.release(l2)
	l2.Release() // twice: no-op
	st, _ = h.reg.Get("a")
	if !st.Loaded || st.Leases != 0 || !st.ExpiresAt.Equal(h.clock.Now().Add(5*minute)) {
		t.Fatalf("idle: %+v", st)
	}
	if used, _ := h.reg.Usage(); used != (registry.Memory{GPU: 10, Host: 1}) {
		t.Errorf("usage %+v", used)
	}
	if h.state("b") != "unloaded" {
		t.Error("b loaded without a request")
	}
}

// Requests for a model that is loading wait for that one load, each as
// long as its own context allows.
func TestConcurrentAcquireWaitsForOneLoad(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 100}, spec("a", 10, 5*minute))
	gate := h.loader.block("a")
	const n = 8
	var wg sync.WaitGroup
	leases := make(chan *registry.Lease, n)
	for range n {
		wg.Go(func() {
			l, err := h.reg.Acquire(context.Background(), "a")
			if err != nil {
				t.Error(err)
				return
			}
			leases <- l
		})
	}
	waitFor(t, "the load to start", func() bool { loads, _ := h.loader.counts("a"); return loads == 1 })
	impatient, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.reg.Acquire(impatient, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a request whose context ends while the model loads: %v", err)
	}
	if h.state("a") != "loading" {
		t.Errorf("state %s while loading", h.state("a"))
	}
	close(gate)
	wg.Wait()
	close(leases)
	var inst registry.Instance
	for l := range leases {
		if inst != nil && l.Instance() != inst {
			t.Error("waiters got different instances")
		}
		inst = l.Instance()
		l.Release()
	}
	if loads, _ := h.loader.counts("a"); loads != 1 {
		t.Errorf("%d loads for %d concurrent requests", loads, n)
	}
}

// A failed load fails every request that waited for it; the next request
// tries again.
func TestLoadErrorReachesEveryWaiter(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 100}, spec("a", 10, 5*minute))
	gate := h.loader.block("a")
	h.loader.failWith("a", errBroken)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := h.reg.Acquire(context.Background(), "a")
			errs <- err
		}()
	}
	waitFor(t, "the load to start", func() bool { loads, _ := h.loader.counts("a"); return loads == 1 })
	close(gate)
	for range 4 {
		if err := <-errs; !errors.Is(err, errBroken) || !strings.Contains(err.Error(), "load model a") {
			t.Errorf("waiter: %v", err)
		}
	}
	if used, _ := h.reg.Usage(); used != (registry.Memory{}) {
		t.Errorf("a failed load holds %+v", used)
	}
	h.loader.failWith("a", nil)
	h.loader.block("a") // a new gate, opened below
	h.loader.mu.Lock()
	delete(h.loader.gate, "a")
	h.loader.mu.Unlock()
	h.release(h.acquire("a"))
	if loads, _ := h.loader.counts("a"); loads < 2 {
		t.Errorf("no new load after a failure: %d", loads)
	}
}

// When a model does not fit, idle models are unloaded least recently used
// first, and only as many as needed.
func TestLRUUnloadsIdleModelsToMakeRoom(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 100}, spec("a", 40, 5*minute), spec("b", 30, 5*minute), spec("c", 30, 5*minute), spec("d", 60, 5*minute))
	for _, id := range []string{"a", "b", "c"} {
		h.release(h.acquire(id))
		h.clock.Advance(time.Second)
	}
	h.release(h.acquire("a")) // a is now the most recently used: b, c, a
	h.clock.Advance(time.Second)
	l := h.acquire("d") // 100 held, 60 needed: b and c go (60), a stays
	defer h.release(l)
	for id, want := range map[string]string{"a": "loaded", "b": "unloaded", "c": "unloaded", "d": "loaded"} {
		if got := h.state(id); got != want {
			t.Errorf("%s: %s, want %s", id, got, want)
		}
	}
	if _, closes := h.loader.counts("a"); closes != 0 {
		t.Error("a was unloaded though unloading b and c made room")
	}
}

// A model in use is never unloaded to make room: the newcomer gets an
// InsufficientMemoryError with a retry estimate, and fits once the other
// is idle.
func TestInUseModelIsNeverUnloaded(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 100}, spec("a", 60, 5*minute), spec("b", 50, 5*minute))
	la := h.acquire("a")
	_, err := h.reg.Acquire(context.Background(), "b")
	var ime *registry.InsufficientMemoryError
	if !errors.As(err, &ime) || ime.Never || ime.ID != "b" || ime.RetryAfter < time.Second || ime.RetryAfter > time.Minute {
		t.Fatalf("Acquire(b) with a in use: %v (%+v)", err, ime)
	}
	if !strings.Contains(err.Error(), "retry in") || ime.InUse.GPU != 60 || ime.Need.GPU != 50 {
		t.Errorf("error %q, %+v", err, ime)
	}
	if h.state("a") != "loaded" {
		t.Fatal("a in use was unloaded")
	}
	h.release(la)
	lb := h.acquire("b")
	h.release(lb)
	if h.state("a") != "unloaded" {
		t.Errorf("a: %s after b needed its room", h.state("a"))
	}
}

// A model larger than the budget never loads, and says so.
func TestModelThatCanNeverFit(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 100, Host: 50}, spec("gpu", 101, 0), registry.Spec{ID: "host", Memory: registry.Memory{Host: 51}})
	for _, id := range []string{"gpu", "host"} {
		_, err := h.reg.Acquire(context.Background(), id)
		var ime *registry.InsufficientMemoryError
		if !errors.As(err, &ime) || !ime.Never || ime.RetryAfter != 0 || !strings.Contains(err.Error(), "more than the whole budget") {
			t.Errorf("%s: %v", id, err)
		}
		if loads, _ := h.loader.counts(id); loads != 0 {
			t.Errorf("%s: loaded %d times", id, loads)
		}
	}
}

// The retry estimate is the mean hold time of the busy model's leases less
// the age of its oldest lease.
func TestRetryAfterFromLeaseDurations(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 100}, spec("a", 60, 5*minute), spec("b", 50, 5*minute))
	for range 3 {
		l := h.acquire("a")
		h.clock.Advance(10 * time.Second)
		h.release(l)
	}
	l := h.acquire("a")
	defer h.release(l)
	h.clock.Advance(4 * time.Second)
	_, err := h.reg.Acquire(context.Background(), "b")
	var ime *registry.InsufficientMemoryError
	if !errors.As(err, &ime) || ime.RetryAfter != 6*time.Second {
		t.Fatalf("%v (%+v), want a retry after 6s", err, ime)
	}
}

// keep_alive as Ollama: the spec's duration after the last request, 0 at
// once, negative never; a lease may set it for this time only; an unloaded
// model reloads on its next request.
func TestKeepAlive(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 1000}, spec("timed", 10, 5*minute), spec("zero", 10, 0), spec("forever", 10, registry.KeepAliveForever))
	h.release(h.acquire("zero"))
	h.waitState("zero", "unloaded")

	h.release(h.acquire("forever"))
	h.release(h.acquire("timed"))
	expiry := h.clock.Now().Add(5 * minute)
	h.clock.waitTimer(t, expiry)
	h.clock.Advance(5*minute - time.Second)
	if h.state("timed") != "loaded" {
		t.Fatal("unloaded before its keep_alive")
	}
	h.clock.waitTimer(t, expiry)
	h.clock.Advance(time.Second)
	h.waitState("timed", "unloaded")
	h.clock.Advance(1000 * time.Hour)
	if h.state("forever") != "loaded" {
		t.Error("keep_alive -1 unloaded")
	}

	// A lease's keep_alive holds for its busy period only.
	l := h.acquire("timed")
	l.SetKeepAlive(0)
	h.release(l)
	h.waitState("timed", "unloaded")
	if loads, closes := h.loader.counts("timed"); loads != 2 || closes != 2 {
		t.Errorf("timed: %d loads, %d closes", loads, closes)
	}
	l = h.acquire("timed")
	if st, _ := h.reg.Get("timed"); st.KeepAlive != 5*minute {
		t.Errorf("the next lease kept the last one's keep_alive: %v", st.KeepAlive)
	}
	l.SetKeepAlive(registry.KeepAliveForever)
	h.release(l)
	if st, _ := h.reg.Get("timed"); !st.Loaded || !st.ExpiresAt.IsZero() {
		t.Errorf("keep_alive -1 from a lease: %+v", st)
	}
}

// Unload (Ollama's keep_alive 0 without a prompt) unloads an idle model at
// once and a busy one when its last request ends.
func TestUnload(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 100}, spec("a", 10, registry.KeepAliveForever), spec("b", 10, registry.KeepAliveForever))
	h.release(h.acquire("a"))
	if err := h.reg.Unload("a"); err != nil {
		t.Fatal(err)
	}
	h.waitState("a", "unloaded")
	l := h.acquire("b")
	if err := h.reg.Unload("b"); err != nil {
		t.Fatal(err)
	}
	if h.state("b") != "loaded" {
		t.Fatal("a model in use was unloaded")
	}
	h.release(l)
	h.waitState("b", "unloaded")
	if err := h.reg.Unload("nope"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Unload of an unknown model: %v", err)
	}
}

func TestPreloadAndNames(t *testing.T) {
	a := spec("shopper-ft:latest", 10, registry.KeepAliveForever)
	a.Aliases, a.Preload = []string{"shopper-ft", "registry.ollama.ai/library/shopper-ft:latest"}, true
	h := newHarness(t, registry.Memory{GPU: 100}, a, spec("b", 10, 5*minute))
	if err := h.reg.Preload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h.state("shopper-ft") != "loaded" || h.state("b") != "unloaded" {
		t.Errorf("after Preload: %s, %s", h.state("shopper-ft"), h.state("b"))
	}
	if id, ok := h.reg.Resolve("registry.ollama.ai/library/shopper-ft:latest"); !ok || id != "shopper-ft:latest" {
		t.Errorf("Resolve = %q, %v", id, ok)
	}
	if _, err := h.reg.Acquire(context.Background(), "missing"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("unknown model: %v", err)
	}
	list := h.reg.List()
	if len(list) != 2 || list[0].Spec.ID != "shopper-ft:latest" || !list[0].Loaded || list[1].Loaded {
		t.Errorf("List: %+v", list)
	}
	// A preload that cannot fit is an error naming the model.
	big := spec("big", 200, 0)
	big.Preload = true
	h2 := newHarness(t, registry.Memory{GPU: 100}, big)
	if err := h2.reg.Preload(context.Background()); err == nil || !strings.Contains(err.Error(), "preload big") {
		t.Errorf("Preload of a model over the budget: %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	load := newFakeLoader(registry.Memory{}).load
	dup := spec("x", 1, 0)
	dup.Aliases, dup.Source = []string{"a"}, "--models m.json"
	tests := []struct {
		name  string
		cfg   registry.Config
		specs []registry.Spec
		want  string
	}{
		{"duplicate id", registry.Config{}, []registry.Spec{spec("a", 1, 0), spec("a", 1, 0)}, `"a" names both a (test) and a (test)`},
		{"alias of another", registry.Config{}, []registry.Spec{spec("a", 1, 0), dup}, `"a" names both a (test) and x (--models m.json)`},
		{"no id", registry.Config{}, []registry.Spec{{}}, "without an id"},
		{"negative memory", registry.Config{}, []registry.Spec{spec("a", -1, 0)}, "negative memory"},
		{"negative budget", registry.Config{Budget: registry.Memory{GPU: -1}}, nil, "negative budget"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := registry.New(tt.cfg, tt.specs, registry.Deps{Loader: load})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := registry.New(registry.Config{}, nil, registry.Deps{}); err == nil {
		t.Error("New without a loader")
	}
}

// Close unloads everything, in use or not, cancels a load under way, and
// refuses later requests.
func TestClose(t *testing.T) {
	loader := newFakeLoader(registry.Memory{})
	reg, err := registry.New(registry.Config{}, []registry.Spec{spec("a", 1, registry.KeepAliveForever), spec("slow", 1, 0)}, registry.Deps{Loader: loader.load, Clock: newFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	la, err := reg.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	loader.block("slow")
	slowErr := make(chan error, 1)
	go func() {
		_, err := reg.Acquire(context.Background(), "slow")
		slowErr <- err
	}()
	waitFor(t, "the slow load", func() bool { loads, _ := loader.counts("slow"); return loads == 1 })
	loader.closing.Store(true)
	if err := reg.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-slowErr; err == nil {
		t.Error("a request waiting for a load got a lease after Close")
	}
	if _, closes := loader.counts("a"); closes != 1 {
		t.Errorf("a in use: %d closes at Close", closes)
	}
	la.Release() // after Close: harmless
	if _, err := reg.Acquire(context.Background(), "a"); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Acquire after Close: %v", err)
	}
	if err := reg.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	loader.check(t)
}

func TestParseKeepAlive(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{`300`, 300 * time.Second, false},
		{`0`, 0, false},
		{`-1`, registry.KeepAliveForever, false},
		{`1.5`, 1500 * time.Millisecond, false},
		{`"5m"`, 5 * time.Minute, false},
		{`"0"`, 0, false},
		{`"-1"`, registry.KeepAliveForever, false},
		{`"-1m"`, registry.KeepAliveForever, false},
		{`"300"`, 300 * time.Second, false},
		{`1e300`, registry.KeepAliveForever, false},
		{`"soon"`, 0, true},
		{`true`, 0, true},
		{`{}`, 0, true},
	}
	for _, tt := range tests {
		got, err := registry.ParseKeepAlive(json.RawMessage(tt.in))
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseKeepAlive(%s) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
	if s := registry.FormatKeepAlive(registry.KeepAliveForever); s != "-1" {
		t.Errorf("FormatKeepAlive(forever) = %q", s)
	}
}

// A load whose requests all gave up still ends in an idle model with its
// keep_alive running: unloaded at once with keep_alive 0, else expiring.
func TestLoadThatNobodyWaitsFor(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 100}, spec("zero", 10, 0), spec("timed", 10, 5*minute))
	for _, id := range []string{"zero", "timed"} {
		gate := h.loader.block(id)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		if _, err := h.reg.Acquire(ctx, id); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: %v", id, err)
		}
		cancel()
		close(gate)
	}
	h.waitState("timed", "loaded")
	st, _ := h.reg.Get("timed")
	if want := st.LoadedAt.Add(5 * minute); !st.ExpiresAt.Equal(want) {
		t.Errorf("timed: expires %v, want %v", st.ExpiresAt, want)
	}
	waitFor(t, "zero to load and unload", func() bool { _, closes := h.loader.counts("zero"); return closes == 1 })
	h.waitState("zero", "unloaded")
}

// Many requests for more models than fit, under -race: the live memory
// never passes the budget (checked by the loader at every load), no model
// is closed while a request holds it (checked by the instance), and every
// request gets a model or an InsufficientMemoryError.
func TestStressBudgetAndLeases(t *testing.T) {
	keep := []time.Duration{0, 5 * minute, registry.KeepAliveForever, time.Second}
	var specs []registry.Spec
	for i := range 6 {
		specs = append(specs, spec(string(rune('a'+i)), 30, keep[i%len(keep)]))
	}
	h := newHarness(t, registry.Memory{GPU: 100}, specs...)
	var wg sync.WaitGroup
	var mu sync.Mutex
	got, refused := 0, 0
	for g := range 12 {
		wg.Go(func() {
			for i := range 150 {
				id := string(rune('a' + (g+i*7)%6))
				l, err := h.reg.Acquire(context.Background(), id)
				var ime *registry.InsufficientMemoryError
				switch {
				case errors.As(err, &ime) && !ime.Never:
					mu.Lock()
					refused++
					mu.Unlock()
					continue
				case err != nil:
					t.Error(err)
					return
				}
				inst := l.Instance().(*fakeInstance)
				inst.inUse.Add(1)
				if inst.closed.Load() || inst.id != id {
					t.Errorf("lease on %s: instance %s closed %v", id, inst.id, inst.closed.Load())
				}
				if i%10 == 0 {
					l.SetKeepAlive(0)
				}
				h.clock.Advance(100 * time.Millisecond)
				inst.inUse.Add(-1)
				l.Release()
				mu.Lock()
				got++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got == 0 {
		t.Fatal("no request got a model")
	}
	t.Logf("%d leases, %d refused for memory", got, refused)
	if used, _ := h.reg.Usage(); !used.Within(registry.Memory{GPU: 100}) {
		t.Errorf("usage %+v over the budget", used)
	}
}

// A model that is still loading frees its memory after its load and its
// first requests: the retry estimate counts the load's expected rest
// (without history, as long again as it has taken), not the 60 s cap.
func TestRetryAfterWhileLoading(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 100}, spec("a", 60, 5*minute), spec("b", 50, 5*minute))
	gate := h.loader.block("a")
	done := make(chan error, 1)
	go func() {
		l, err := h.reg.Acquire(context.Background(), "a")
		if err == nil {
			l.Release()
		}
		done <- err
	}()
	h.waitState("a", "loading")
	h.clock.Advance(3 * time.Second)
	_, err := h.reg.Acquire(context.Background(), "b")
	var ime *registry.InsufficientMemoryError
	if !errors.As(err, &ime) || ime.Never || ime.RetryAfter != 3*time.Second {
		t.Errorf("%v (%+v), want a retry after 3s", err, ime)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// SetKeepAlive by name, as an Ollama request's keep_alive: on a model in
// use it decides what happens at the end of its requests (0: unload), and
// the next busy period starts from the spec's again; on an idle model it
// restarts the keep_alive from now.
func TestSetKeepAliveByName(t *testing.T) {
	h := newHarness(t, registry.Memory{GPU: 1000}, spec("a", 10, 5*minute))
	l := h.acquire("a")
	if err := h.reg.SetKeepAlive("a", 0); err != nil {
		t.Fatal(err)
	}
	h.release(l)
	h.waitState("a", "unloaded")
	h.release(h.acquire("a"))
	if st, _ := h.reg.Get("a"); st.KeepAlive != 5*minute || st.State != "loaded" {
		t.Errorf("next busy period: %+v, want the spec's keep_alive", st)
	}
	if err := h.reg.SetKeepAlive("a", 0); err != nil {
		t.Fatal(err)
	}
	h.waitState("a", "unloaded")
	if err := h.reg.SetKeepAlive("nope", 0); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("unknown model: %v", err)
	}
}
