package registry

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Memory is an amount of GPU and of host memory, in bytes.
type Memory struct {
	GPU, Host int64
}

func (m Memory) add(o Memory) Memory { return Memory{m.GPU + o.GPU, m.Host + o.Host} }
func (m Memory) sub(o Memory) Memory { return Memory{m.GPU - o.GPU, m.Host - o.Host} }

// Within reports whether m fits in budget b; a zero field of b is no bound.
func (m Memory) Within(b Memory) bool {
	return (b.GPU == 0 || m.GPU <= b.GPU) && (b.Host == 0 || m.Host <= b.Host)
}

func (m Memory) String() string {
	return fmt.Sprintf("%s GPU, %s host", FormatBytes(m.GPU), FormatBytes(m.Host))
}

// FormatBytes writes n in the largest binary unit that keeps it at least 1
// in magnitude ("1.5 GiB", "-512 B").
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n), 0
	for (f >= 1024 || f <= -1024) && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// ErrNotFound is the error of Acquire and Unload for a name no spec has.
var ErrNotFound = errors.New("model not found")

// ErrClosed is the error of Acquire after Close.
var ErrClosed = errors.New("model registry closed")

// InsufficientMemoryError says a model cannot be loaded: never (Never: it
// needs more than the budget by itself), or not now (every other model
// holding memory is in use or loading, and unloading the idle ones would
// not make room).
type InsufficientMemoryError struct {
	ID string
	// Need is what the model takes; Budget the registry's budget; InUse
	// what loaded, loading and unloading models hold.
	Need, Budget, InUse Memory
	Never               bool
	// RetryAfter estimates when enough of the models in use will be idle
	// (their requests' typical duration less their age), within the
	// registry's bounds; 0 when Never.
	RetryAfter time.Duration
}

func (e *InsufficientMemoryError) Error() string {
	var short []string
	if e.Budget.GPU > 0 && e.Need.GPU > 0 {
		short = append(short, fmt.Sprintf("%s of GPU memory (budget %s)", FormatBytes(e.Need.GPU), FormatBytes(e.Budget.GPU)))
	}
	if e.Budget.Host > 0 && e.Need.Host > 0 {
		short = append(short, fmt.Sprintf("%s of host memory (budget %s)", FormatBytes(e.Need.Host), FormatBytes(e.Budget.Host)))
	}
	need := strings.Join(short, " and ")
	if e.Never {
		return fmt.Sprintf("model %s needs %s: more than the whole budget", e.ID, need)
	}
	return fmt.Sprintf("model %s needs %s, and models in use hold %s: retry in %s",
		e.ID, need, e.InUse, e.RetryAfter.Round(time.Second))
}

// victims picks idle loaded models to unload, least recently used first,
// until need fits beside what stays; ok is false when unloading every idle
// model (and waiting for the unloads under way) would not make room.
// Called with r.mu held.
func (r *Registry) victims(need Memory) (vs []*entry, ok bool) {
	free := r.used
	for _, e := range r.entries {
		if e.state == stateUnloading {
			free = free.sub(e.spec.Memory) // soon free
		}
	}
	if free.add(need).Within(r.cfg.Budget) {
		return nil, true
	}
	var idle []*entry
	for _, e := range r.entries {
		if e.state == stateLoaded && e.refs == 0 {
			idle = append(idle, e)
		}
	}
	slices.SortFunc(idle, func(a, b *entry) int { return a.lastUsed.Compare(b.lastUsed) })
	for _, e := range idle {
		vs = append(vs, e)
		free = free.sub(e.spec.Memory)
		if free.add(need).Within(r.cfg.Budget) {
			return vs, true
		}
	}
	return nil, false
}

// retryAfter estimates when models in use will have become idle enough
// for need to fit: models in use sorted by when their requests are
// expected to end (their leases' mean hold time less the age of their
// oldest lease, or that age again without history), freed in that order
// until need fits. Called with r.mu held.
func (r *Registry) retryAfter(need Memory) time.Duration {
	now := r.clock.Now()
	type busy struct {
		e    *entry
		left time.Duration
	}
	var bs []busy
	free := r.used
	for _, e := range r.entries {
		switch {
		case e.state == stateUnloading, e.state == stateLoaded && e.refs == 0:
			free = free.sub(e.spec.Memory)
		case e.state == stateLoaded:
			bs = append(bs, busy{e, e.expectedLeft(now)})
		case e.state == stateLoading:
			bs = append(bs, busy{e, e.loadingLeft(now)})
		}
	}
	slices.SortFunc(bs, func(a, b busy) int { return int(a.left - b.left) })
	wait := r.cfg.MaxRetryAfter
	for _, b := range bs {
		free = free.sub(b.e.spec.Memory)
		if free.add(need).Within(r.cfg.Budget) {
			wait = b.left
			break
		}
	}
	return min(max(wait, r.cfg.MinRetryAfter), r.cfg.MaxRetryAfter)
}

// expectedLeft is how long the entry's current leases are expected to
// last. Called with r.mu held.
func (e *entry) expectedLeft(now time.Time) time.Duration {
	var oldest time.Time
	for _, start := range e.leases {
		if oldest.IsZero() || start.Before(oldest) {
			oldest = start
		}
	}
	age := now.Sub(oldest)
	if e.holds == 0 {
		return age // no history: assume as long again
	}
	return max(e.meanHold-age, 0)
}

// loadingLeft is how long a loading entry is expected to hold its memory
// before it could be idle: the rest of its load (its mean load time less
// the load's age, or that age again without history) and then one lease
// (the mean hold time; none without history). Called with r.mu held.
func (e *entry) loadingLeft(now time.Time) time.Duration {
	age := now.Sub(e.loadStart)
	left := age
	if e.loads > 0 {
		left = max(e.meanLoad-age, 0)
	}
	return left + e.meanHold
}

// observeHold folds a lease's duration into the entry's mean.
func (e *entry) observeHold(d time.Duration) {
	e.holds++
	e.meanHold = ema(e.meanHold, d, e.holds)
}

// ema is an exponential moving average weighting the last about 10
// observations: mean after the n-th observation d.
func ema(mean, d time.Duration, n int) time.Duration {
	if n == 1 {
		return d
	}
	return mean + (d-mean)/10
}
