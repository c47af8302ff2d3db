package registry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nextact/nextact/models/registry"
)

// fakeClock is a Clock moved by Advance. Its timers fire when the clock
// passes their deadline.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	c       chan time.Time
	stopped bool
}

var _ registry.Clock = (*fakeClock)(nil)

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) registry.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
		return &timerHandle{c, t}
	}
	c.timers = append(c.timers, t)
	return &timerHandle{c, t}
}

type timerHandle struct {
	c *fakeClock
	t *fakeTimer
}

func (h *timerHandle) C() <-chan time.Time { return h.t.c }

func (h *timerHandle) Stop() bool {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	was := !h.t.stopped
	h.t.stopped = true
	return was
}

// Advance moves the clock and fires the timers it passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	live := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case t.stopped:
		case !c.now.Before(t.at):
			t.c <- c.now
			t.stopped = true
		default:
			live = append(live, t)
		}
	}
	c.timers = live
}

// waitTimer waits until a live timer is due at or before at: the janitor
// is asleep until then, so Advance past it will wake it.
func (c *fakeClock) waitTimer(t *testing.T, at time.Time) {
	t.Helper()
	waitFor(t, "a janitor timer due by "+at.String(), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, tm := range c.timers {
			if !tm.stopped && !tm.at.After(at) {
				return true
			}
		}
		return false
	})
}

// waitFor polls cond until it holds or 10 s pass (the registry's
// background work runs in goroutines; nothing here measures speed).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeInstance is a loaded model of the fake loader.
type fakeInstance struct {
	id     string
	mem    registry.Memory
	closed atomic.Bool
	inUse  atomic.Int32 // leases the test holds on it
	loader *fakeLoader
}

var _ registry.Instance = (*fakeInstance)(nil)

func (f *fakeInstance) Close(context.Context) error {
	if f.inUse.Load() > 0 && !f.loader.closing.Load() {
		f.loader.fail("%s closed while in use", f.id)
	}
	if f.closed.Swap(true) {
		f.loader.fail("%s closed twice", f.id)
	}
	f.loader.mu.Lock()
	defer f.loader.mu.Unlock()
	f.loader.live = f.loader.live.Sub(f.mem)
	f.loader.closes[f.id]++
	return nil
}

// fakeLoader counts loads and closes and checks the live memory against
// the budget at every load.
type fakeLoader struct {
	mu     sync.Mutex
	budget registry.Memory
	live   memory
	loads  map[string]int
	closes map[string]int
	// gate, when set for an id, blocks its loads until closed (or ctx ends).
	gate map[string]chan struct{}
	// errs makes an id's loads fail.
	errs    map[string]error
	closing atomic.Bool // Close of the registry: closing in use is allowed
	errMu   sync.Mutex
	errList []string
}

// memory is registry.Memory with arithmetic for the tests.
type memory registry.Memory

func (m memory) Sub(o registry.Memory) memory { return memory{m.GPU - o.GPU, m.Host - o.Host} }
func (m memory) Add(o registry.Memory) memory { return memory{m.GPU + o.GPU, m.Host + o.Host} }

func newFakeLoader(budget registry.Memory) *fakeLoader {
	return &fakeLoader{budget: budget, loads: map[string]int{}, closes: map[string]int{}, gate: map[string]chan struct{}{}, errs: map[string]error{}}
}

func (l *fakeLoader) fail(format string, args ...any) {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	l.errList = append(l.errList, fmt.Sprintf(format, args...))
}

func (l *fakeLoader) check(t *testing.T) {
	t.Helper()
	l.errMu.Lock()
	defer l.errMu.Unlock()
	for _, e := range l.errList {
		t.Error(e)
	}
}

func (l *fakeLoader) load(ctx context.Context, s registry.Spec) (registry.Instance, error) {
	l.mu.Lock()
	l.loads[s.ID]++
	gate, err := l.gate[s.ID], l.errs[s.ID]
	l.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.live = l.live.Add(s.Memory)
	if !registry.Memory(l.live).Within(l.budget) {
		l.fail("loading %s: live memory %+v over the budget %+v", s.ID, l.live, l.budget)
	}
	return &fakeInstance{id: s.ID, mem: s.Memory, loader: l}, nil
}

func (l *fakeLoader) counts(id string) (loads, closes int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loads[id], l.closes[id]
}

func (l *fakeLoader) block(id string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := make(chan struct{})
	l.gate[id] = c
	return c
}

func (l *fakeLoader) failWith(id string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs[id] = err
}

var errBroken = errors.New("broken model file")
