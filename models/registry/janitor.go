package registry

import (
	"time"

	"go.uber.org/zap"
)

// wakeJanitor tells the janitor that expiries changed. Called with r.mu
// held.
func (r *Registry) wakeJanitor() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// janitor unloads idle models whose keep_alive expired, sleeping until the
// next expiry or until expiries change.
func (r *Registry) janitor() {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return
		}
		now := r.clock.Now()
		var next time.Time
		for _, e := range r.entries {
			if e.state != stateLoaded || e.refs > 0 || e.expires.IsZero() {
				continue
			}
			if !now.Before(e.expires) {
				r.log.Info("keep_alive expired: unloading model", zap.String("model", e.spec.ID))
				r.startUnload(e)
				continue
			}
			if next.IsZero() || e.expires.Before(next) {
				next = e.expires
			}
		}
		r.mu.Unlock()
		var timer Timer
		var fire <-chan time.Time
		if !next.IsZero() {
			timer = r.clock.NewTimer(next.Sub(now))
			fire = timer.C()
		}
		select {
		case <-fire:
		case <-r.wake:
		case <-r.done:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}
