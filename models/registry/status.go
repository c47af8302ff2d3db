package registry

import "time"

// Status is a model's state, for listings (/v1/models, /api/tags,
// /api/ps).
type Status struct {
	Spec Spec
	// State is unloaded, loading, loaded or unloading; Loaded is State ==
	// "loaded".
	State  string
	Loaded bool
	// Leases are the requests holding the model.
	Leases int
	// LoadedAt and LastUsed are zero when it never was.
	LoadedAt, LastUsed time.Time
	// ExpiresAt is when an idle loaded model unloads; zero when it is not
	// loaded, in use, or kept forever.
	ExpiresAt time.Time
	// KeepAlive is its current keep_alive (the spec's or the last
	// lease's).
	KeepAlive time.Duration
}

// List is every model's status, in spec order.
func (r *Registry) List() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, len(r.entries))
	for i, e := range r.entries {
		out[i] = e.status()
	}
	return out
}

// Get is one model's status, by ID or alias.
func (r *Registry) Get(name string) (Status, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byName[name]
	if e == nil {
		return Status{}, false
	}
	return e.status(), true
}

// Usage is the memory loading, loaded and unloading models hold, and the
// budget.
func (r *Registry) Usage() (used, budget Memory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.used, r.cfg.Budget
}

// status is e's Status. Called with r.mu held.
func (e *entry) status() Status {
	s := Status{
		Spec: e.spec, State: e.state.String(), Loaded: e.state == stateLoaded, Leases: e.refs,
		LoadedAt: e.loadedAt, LastUsed: e.lastUsed, KeepAlive: e.keepAlive,
	}
	if s.Loaded && e.refs == 0 {
		s.ExpiresAt = e.expires
	}
	return s
}
