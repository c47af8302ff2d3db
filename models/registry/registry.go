// Package registry keeps many models served by one process, loading each
// on first use (or at start) and unloading idle ones under a memory
// budget, with Ollama's keep_alive semantics. It is pure Go and knows
// nothing of engines or HTTP: a Loader turns a Spec into an Instance
// (for nextact, an engine with its scheduler), which the registry closes
// when it unloads the model.
//
// Invariants: a model with a lease (Acquire until Release) is never
// unloaded, except by Close; the memory of loading, loaded and unloading
// models together stays within the budget (a model's memory counts from
// the start of its load to the end of its Close); one model loads at most
// once at a time, and requests for a model that is loading wait for that
// load (bounded by their context). When a model does not fit, idle models
// are unloaded least recently used first; when it still cannot fit, or
// never could, Acquire fails at once with an InsufficientMemoryError.
//
// keep_alive: an idle model unloads KeepAlive after its last request ends
// (0: at once; negative: never), the spec's value unless the last lease
// set another (Lease.SetKeepAlive, as an Ollama request's keep_alive
// does). A janitor goroutine unloads expired models on the injected
// Clock. All methods are safe for concurrent use.
package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Instance is a loaded model. Close frees it; the registry calls it once,
// when no lease holds the model (or at Close), and counts the model's
// memory as held until it returns.
type Instance interface {
	Close(ctx context.Context) error
}

// Loader loads a model. ctx ends at the registry's LoadTimeout or Close;
// it does not end when the request that caused the load gives up, since
// others may be waiting for the same load.
type Loader func(ctx context.Context, s Spec) (Instance, error)

// Config bounds the registry.
type Config struct {
	// Budget is the memory the models may hold together; a zero field is
	// no bound on that kind of memory. The caller reads what is free
	// (NVML, /proc/meminfo) and sets it.
	Budget Memory
	// LoadTimeout bounds one load (default 10m); UnloadTimeout one Close
	// of an instance (default 1m).
	LoadTimeout, UnloadTimeout time.Duration
	// MinRetryAfter and MaxRetryAfter bound InsufficientMemoryError's
	// RetryAfter (defaults 1s and 60s).
	MinRetryAfter, MaxRetryAfter time.Duration
}

// Deps are the registry's collaborators.
type Deps struct {
	Loader Loader
	// Clock defaults to the system clock.
	Clock Clock
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
}

type state int

const (
	stateUnloaded state = iota
	stateLoading
	stateLoaded
	stateUnloading
)

func (s state) String() string {
	return [...]string{"unloaded", "loading", "loaded", "unloading"}[s]
}

// entry is one spec and its load state; every field is guarded by r.mu.
type entry struct {
	spec     Spec
	state    state
	inst     Instance
	refs     int
	leases   map[*Lease]time.Time // start of each live lease
	lastUsed time.Time
	loadedAt time.Time
	expires  time.Time // zero: no expiry scheduled
	// keepAlive is the spec's, or what the last lease set.
	keepAlive time.Duration
	// unloadAsked is Unload on a model in use: unload when idle.
	unloadAsked bool
	// changed is closed (and replaced) when a load or an unload ends.
	changed chan struct{}
	// loadSeq counts loads; loadErr is the last one's error.
	loadSeq int
	loadErr error
	// waiters are Acquire calls waiting for this model's load.
	waiters int
	// holds and meanHold describe how long leases last, loads and
	// meanLoad how long loads take, loadStart when the current one began
	// (retryAfter).
	holds, loads       int
	meanHold, meanLoad time.Duration
	loadStart          time.Time
}

// Registry serves a fixed set of specs; see the package documentation.
type Registry struct {
	cfg    Config
	loader Loader
	clock  Clock
	log    *zap.Logger

	mu      sync.Mutex
	entries []*entry          // in spec order
	byName  map[string]*entry // IDs and aliases
	used    Memory            // loading + loaded + unloading
	// memFreed is closed (and replaced) when used shrinks.
	memFreed chan struct{}
	closed   bool

	ctx    context.Context // loads; cancelled by Close
	cancel context.CancelFunc
	wake   chan struct{} // the janitor's: expiries changed
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup
}

// New returns a registry of specs and starts its janitor; Close stops it.
func New(cfg Config, specs []Spec, deps Deps) (*Registry, error) {
	if deps.Loader == nil {
		return nil, errors.New("model registry: no loader")
	}
	if cfg.Budget.GPU < 0 || cfg.Budget.Host < 0 {
		return nil, fmt.Errorf("model registry: negative budget %+v", cfg.Budget)
	}
	setDefault := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setDefault(&cfg.LoadTimeout, 10*time.Minute)
	setDefault(&cfg.UnloadTimeout, time.Minute)
	setDefault(&cfg.MinRetryAfter, time.Second)
	setDefault(&cfg.MaxRetryAfter, time.Minute)
	cfg.MaxRetryAfter = max(cfg.MaxRetryAfter, cfg.MinRetryAfter)
	if deps.Clock == nil {
		deps.Clock = SystemClock()
	}
	if deps.Logger == nil {
		deps.Logger = zap.NewNop()
	}
	r := &Registry{
		cfg: cfg, loader: deps.Loader, clock: deps.Clock, log: deps.Logger.Named("registry"),
		byName: map[string]*entry{}, memFreed: make(chan struct{}),
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	for _, s := range specs {
		if s.ID == "" {
			return nil, errors.New("model registry: a model without an id")
		}
		if s.Memory.GPU < 0 || s.Memory.Host < 0 {
			return nil, fmt.Errorf("model registry: model %s: negative memory %+v", s.ID, s.Memory)
		}
		e := &entry{spec: s, keepAlive: s.KeepAlive, changed: make(chan struct{}), leases: map[*Lease]time.Time{}}
		for _, name := range append([]string{s.ID}, s.Aliases...) {
			if prev, dup := r.byName[name]; dup {
				if prev == e {
					continue
				}
				return nil, fmt.Errorf("model registry: %q names both %s (%s) and %s (%s)", name, prev.spec.ID, prev.spec.Source, s.ID, s.Source)
			}
			r.byName[name] = e
		}
		r.entries = append(r.entries, e)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.janitor()
	return r, nil
}

// Resolve returns the ID a name (an ID or an alias) refers to.
func (r *Registry) Resolve(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.byName[name]; e != nil {
		return e.spec.ID, true
	}
	return "", false
}

// Lease holds a loaded model: it is not unloaded until Release.
type Lease struct {
	r    *Registry
	e    *entry
	inst Instance
	once sync.Once
}

// Instance is the loaded model.
func (l *Lease) Instance() Instance { return l.inst }

// Spec is the model's spec.
func (l *Lease) Spec() Spec { return l.e.spec }

// SetKeepAlive sets how long the model stays loaded once idle, from the
// end of its last request on (Ollama's per-request keep_alive: the next
// lease without one goes back to the spec's).
func (l *Lease) SetKeepAlive(d time.Duration) {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	l.e.keepAlive = d
}

// Release gives the model back; the last release of a model starts its
// keep_alive. Releasing twice is a no-op.
func (l *Lease) Release() {
	l.once.Do(func() {
		r, e := l.r, l.e
		r.mu.Lock()
		defer r.mu.Unlock()
		now := r.clock.Now()
		if start, ok := e.leases[l]; ok {
			e.observeHold(now.Sub(start))
			delete(e.leases, l)
			e.refs--
		}
		e.lastUsed = now
		if e.refs == 0 && e.state == stateLoaded && !r.closed {
			r.idle(e, now)
		}
	})
}

// Acquire returns a lease on the model name (an ID or alias), loading it
// first when needed. It waits for a load under way, its own or another
// request's, and for idle models it unloads to make room, as long as ctx
// allows. Errors: ErrNotFound, ErrClosed, *InsufficientMemoryError, the
// loader's error (for every request that waited for that load), or ctx's.
func (r *Registry) Acquire(ctx context.Context, name string) (*Lease, error) {
	r.mu.Lock()
	e := r.byName[name]
	if e == nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	for {
		if r.closed {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		var wait <-chan struct{}
		seq := -1
		switch e.state {
		case stateLoaded:
			l := r.lease(e)
			r.mu.Unlock()
			return l, nil
		case stateLoading:
			wait, seq = e.changed, e.loadSeq
		case stateUnloading:
			wait = e.changed
		case stateUnloaded:
			var err error
			if wait, err = r.makeRoom(e); err != nil {
				r.mu.Unlock()
				return nil, err
			}
			if wait == nil {
				r.startLoad(e)
				wait, seq = e.changed, e.loadSeq
			}
		}
		if seq >= 0 {
			e.waiters++
		}
		r.mu.Unlock()
		var err error
		select {
		case <-wait:
		case <-ctx.Done():
			err = ctx.Err()
		}
		r.mu.Lock()
		if seq >= 0 {
			e.waiters--
		}
		if err != nil {
			// The last waiter of a load that ended gives up: the model
			// is idle and its keep_alive starts now.
			if e.waiters == 0 && e.state == stateLoaded && e.refs == 0 && e.expires.IsZero() && !r.closed {
				r.idle(e, r.clock.Now())
			}
			r.mu.Unlock()
			return nil, err
		}
		if seq >= 0 && e.loadSeq == seq && e.state == stateUnloaded && e.loadErr != nil {
			err := e.loadErr
			r.mu.Unlock()
			return nil, err
		}
	}
}

// makeRoom decides whether e can load now (nil, nil), after memory is
// freed (a channel to wait on; unloads of idle models are started), or
// not (an *InsufficientMemoryError). Called with r.mu held.
func (r *Registry) makeRoom(e *entry) (<-chan struct{}, error) {
	need := e.spec.Memory
	if !need.Within(r.cfg.Budget) {
		return nil, &InsufficientMemoryError{ID: e.spec.ID, Need: need, Budget: r.cfg.Budget, InUse: r.used, Never: true}
	}
	if r.used.add(need).Within(r.cfg.Budget) {
		return nil, nil
	}
	vs, ok := r.victims(need)
	if !ok {
		return nil, &InsufficientMemoryError{ID: e.spec.ID, Need: need, Budget: r.cfg.Budget, InUse: r.used, RetryAfter: r.retryAfter(need)}
	}
	for _, v := range vs {
		r.log.Info("unloading an idle model to make room", zap.String("model", v.spec.ID), zap.String("for", e.spec.ID))
		r.startUnload(v)
	}
	return r.memFreed, nil
}

// lease gives out a lease on a loaded entry. Called with r.mu held.
func (r *Registry) lease(e *entry) *Lease {
	now := r.clock.Now()
	l := &Lease{r: r, e: e, inst: e.inst}
	if e.refs == 0 {
		e.keepAlive = e.spec.KeepAlive // a new busy period: the spec's unless a lease sets one
	}
	e.refs++
	e.leases[l] = now
	e.lastUsed, e.expires = now, time.Time{}
	return l
}

// idle starts the keep_alive of an entry whose last lease ended (or whose
// load ended with nobody waiting). Called with r.mu held.
func (r *Registry) idle(e *entry, now time.Time) {
	switch {
	case e.unloadAsked || e.keepAlive == 0:
		r.startUnload(e)
	case e.keepAlive < 0:
		e.expires = time.Time{}
	default:
		e.expires = now.Add(e.keepAlive)
		r.wakeJanitor()
	}
}

// startLoad loads e in the background. Called with r.mu held.
func (r *Registry) startLoad(e *entry) {
	e.state, e.loadErr, e.unloadAsked = stateLoading, nil, false
	e.loadSeq++
	e.loadStart = r.clock.Now()
	r.used = r.used.add(e.spec.Memory)
	r.log.Info("loading model", zap.String("model", e.spec.ID), zap.String("path", e.spec.Path),
		zap.Int64("gpu_bytes", e.spec.Memory.GPU), zap.Int64("host_bytes", e.spec.Memory.Host))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		start := r.clock.Now()
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.LoadTimeout)
		inst, err := r.loader(ctx, e.spec)
		cancel()
		r.mu.Lock()
		defer r.mu.Unlock()
		now := r.clock.Now()
		if err != nil {
			r.log.Warn("model load failed", zap.String("model", e.spec.ID), zap.Error(err))
			e.state, e.loadErr = stateUnloaded, fmt.Errorf("load model %s: %w", e.spec.ID, err)
			r.freed(e)
			return
		}
		r.log.Info("model loaded", zap.String("model", e.spec.ID), zap.Duration("took", now.Sub(start)))
		e.loads++
		e.meanLoad = ema(e.meanLoad, now.Sub(start), e.loads)
		e.state, e.inst, e.loadedAt, e.lastUsed = stateLoaded, inst, now, now
		e.keepAlive = e.spec.KeepAlive
		switch {
		case r.closed:
			r.startUnload(e)
		case e.waiters == 0:
			r.idle(e, now)
		}
		e.notify()
	}()
}

// startUnload closes e's instance in the background; e must have no
// lease, unless the registry is closing. Called with r.mu held.
func (r *Registry) startUnload(e *entry) {
	inst := e.inst
	e.state, e.inst, e.expires, e.unloadAsked = stateUnloading, nil, time.Time{}, false
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.UnloadTimeout)
		err := inst.Close(ctx)
		cancel()
		if err != nil {
			r.log.Warn("model unload", zap.String("model", e.spec.ID), zap.Error(err))
		} else {
			r.log.Info("model unloaded", zap.String("model", e.spec.ID))
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		e.state = stateUnloaded
		r.freed(e)
	}()
}

// freed returns e's memory and wakes whoever waits for e or for memory.
// Called with r.mu held.
func (r *Registry) freed(e *entry) {
	r.used = r.used.sub(e.spec.Memory)
	close(r.memFreed)
	r.memFreed = make(chan struct{})
	e.notify()
}

// notify wakes the waiters of e's state. Called with r.mu held.
func (e *entry) notify() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// SetKeepAlive sets how long a model stays loaded once idle, by name, as
// Lease.SetKeepAlive does (for the model's current busy period; the next
// one starts from the spec's again). On an idle loaded model it restarts
// the keep_alive from now (0 unloads it at once). A model that is not
// loaded is left alone.
func (r *Registry) SetKeepAlive(name string, d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byName[name]
	if e == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if e.state != stateLoaded && e.state != stateLoading {
		return nil
	}
	e.keepAlive = d
	if e.state == stateLoaded && e.refs == 0 && !r.closed {
		e.expires = time.Time{}
		r.idle(e, r.clock.Now())
	}
	return nil
}

// Unload unloads a model as soon as it is idle (now, when it is), as an
// Ollama request with keep_alive 0 and no prompt does. A model that is
// not loaded is left alone.
func (r *Registry) Unload(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byName[name]
	if e == nil {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	switch {
	case e.state == stateLoaded && e.refs == 0:
		r.startUnload(e)
	case e.state == stateLoaded || e.state == stateLoading:
		e.unloadAsked = true
	}
	return nil
}

// Preload loads every spec with Preload, in order, and leaves each idle
// with its keep_alive running (so a preloaded model with keep_alive 0
// unloads at once: use a negative one to keep it). The first failure
// ends it; the models already loaded stay.
func (r *Registry) Preload(ctx context.Context) error {
	for _, e := range r.entries {
		if !e.spec.Preload {
			continue
		}
		l, err := r.Acquire(ctx, e.spec.ID)
		if err != nil {
			return fmt.Errorf("preload %s: %w", e.spec.ID, err)
		}
		l.Release()
	}
	return nil
}

// Close unloads every model, leases or not (their holders must have
// stopped using them: the server drains first), cancels loads under way,
// stops the janitor and waits for all of it, at most until ctx ends.
// Acquire then fails with ErrClosed. Closing twice waits again.
func (r *Registry) Close(ctx context.Context) error {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.done)
		r.cancel()
		for _, e := range r.entries {
			if e.state == stateLoaded {
				r.startUnload(e)
			}
		}
		close(r.memFreed) // wakes waiters, who see closed
		r.memFreed = make(chan struct{})
		for _, e := range r.entries {
			e.notify()
		}
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close model registry: %w", ctx.Err())
	}
}
