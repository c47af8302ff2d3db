package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/sessionstore"
)

// SharedSessionStore is a SessionStore that several replicas use at once
// (sessionstore/redisstore): the server keeps no session in memory between
// requests but reads it from the store at each access, so a session can
// move between replicas (its KV rebuilt by prefill where it lands), and a
// step holds the session's lease, which the store expires unless renewed,
// so a replica that dies mid-step blocks its session for at most one lease
// period. The store expires idle sessions and bounds their number itself.
// MUST be goroutine-safe.
type SharedSessionStore interface {
	SessionStore
	// Get returns a session and restarts its TTL at now;
	// sessionstore.ErrNotFound when absent or expired.
	Get(ctx context.Context, id string, now time.Time) (sessionstore.Record, error)
	// Lease takes the session's lease for owner and returns the session;
	// sessionstore.ErrBusy when another owner holds it.
	Lease(ctx context.Context, id, owner string, now time.Time) (sessionstore.Record, error)
	// Renew extends owner's lease and restarts the session's TTL.
	Renew(ctx context.Context, id, owner string, now time.Time) error
	// Release gives owner's lease back.
	Release(ctx context.Context, id, owner string) error
}

// DefaultSessionLease is how long a step's lease on a shared session lasts
// without renewal; a step renews it every third of that.
const DefaultSessionLease = 30 * time.Second

// sharedSessions keeps sessions in a SharedSessionStore.
type sharedSessions struct {
	store SharedSessionStore
	// contextOf gives a served model's context length (ok false: not
	// served here).
	contextOf func(id string) (ctxLen int, ok bool)
	ttl       time.Duration
	max       int
	lease     time.Duration
	now       func() time.Time
	log       *zap.Logger

	mu       sync.Mutex
	closed   bool
	stepping map[*session]*renewal // steps in flight here
	bytes    int64                 // their sessions' text
}

// renewal is the goroutine that renews one step's lease.
type renewal struct {
	stop, done chan struct{}
}

func newSharedSessions(store SharedSessionStore, contextOf func(string) (int, bool), cfg Config, now func() time.Time, log *zap.Logger) *sharedSessions {
	return &sharedSessions{store: store, contextOf: contextOf, ttl: cfg.SessionTTL, max: cfg.MaxSessions, lease: cfg.SessionLease,
		now: now, log: log, stepping: map[*session]*renewal{}}
}

func (sh *sharedSessions) add(sess *session) (sessionObject, error) {
	sh.mu.Lock()
	closed := sh.closed
	sh.mu.Unlock()
	if closed {
		return sessionObject{}, errShuttingDown
	}
	now := sh.now()
	sess.created, sess.lastUsed = now, now
	ctx, cancel := storeCtx()
	defer cancel()
	switch err := sh.store.Create(ctx, sess.record()); {
	case errors.Is(err, sessionstore.ErrFull):
		return sessionObject{}, &sessionLimitError{max: sh.max, retryAfter: time.Second}
	case err != nil:
		return sessionObject{}, storeFailure(sh.log, "create", err)
	}
	return sess.object(sh.ttl), nil
}

// session turns a stored record into a session of a model served here.
func (sh *sharedSessions) session(rec sessionstore.Record) (*session, error) {
	ctxLen, ok := sh.contextOf(rec.Model)
	if !ok {
		return nil, &requestError{notFound: true, code: "session_not_found", msg: fmt.Sprintf(
			"Session %q belongs to the model %q, which this server does not serve.", strings.Clone(rec.ID), rec.Model)}
	}
	format, err := nextaction.ParseFormat(rec.Format)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", rec.ID, err)
	}
	pol, err := rec.History.Normalize("history")
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", rec.ID, err)
	}
	sess := &session{id: rec.ID, model: rec.Model, ctxLen: ctxLen, format: format, persona: rec.Persona, history: pol,
		created: rec.Created, lastUsed: rec.LastUsed, steps: rec.Steps, bytes: int64(len(rec.Persona))}
	for _, s := range rec.Steps {
		sess.bytes += stepBytes(s)
	}
	return sess, nil
}

// lookupError maps a store's answer about id to the client's.
func (sh *sharedSessions) lookupError(op, id string, err error) error {
	switch {
	case errors.Is(err, sessionstore.ErrNotFound):
		return sessionNotFound(id, sh.ttl)
	case errors.Is(err, sessionstore.ErrBusy):
		return sessionBusy(id)
	}
	return storeFailure(sh.log, op, err)
}

// maxSessionIDBytes bounds an id worth asking the store about: ids are
// sessionIDPrefix and 26 characters (rand.Text).
const maxSessionIDBytes = 64

// plausible reports whether id could be a session's; others are a 404
// without a store round trip.
func plausible(id string) bool {
	return len(id) <= maxSessionIDBytes && strings.HasPrefix(id, sessionIDPrefix)
}

func (sh *sharedSessions) view(id string) (sessionObject, error) {
	if !plausible(id) {
		return sessionObject{}, sessionNotFound(id, sh.ttl)
	}
	ctx, cancel := storeCtx()
	defer cancel()
	rec, err := sh.store.Get(ctx, id, sh.now())
	if err != nil {
		return sessionObject{}, sh.lookupError("get", id, err)
	}
	sess, err := sh.session(rec)
	if err != nil {
		return sessionObject{}, err
	}
	return sess.object(sh.ttl), nil
}

// begin leases the session for this step (an owner token per step, so a
// second step on this replica is refused like one on another).
func (sh *sharedSessions) begin(id string, pageBytes int, limit func(ctxLen int) int64) (*session, []nextaction.Step, error) {
	if !plausible(id) {
		return nil, nil, sessionNotFound(id, sh.ttl)
	}
	ctx, cancel := storeCtx()
	defer cancel()
	owner := rand.Text()
	rec, err := sh.store.Lease(ctx, id, owner, sh.now())
	if err != nil {
		return nil, nil, sh.lookupError("lease", id, err)
	}
	sess, err := sh.session(rec)
	if err == nil {
		err = checkSessionBytes(sess, pageBytes, limit)
	}
	if err != nil {
		sh.release(id, owner)
		return nil, nil, err
	}
	sess.lease, sess.busy = owner, true
	r := &renewal{stop: make(chan struct{}), done: make(chan struct{})}
	sh.mu.Lock()
	sh.stepping[sess] = r
	sh.bytes += sess.bytes
	sh.mu.Unlock()
	go sh.renew(sess.id, owner, r)
	return sess, sess.steps[:len(sess.steps):len(sess.steps)], nil
}

// renew extends a step's lease every third of the lease until stopped.
func (sh *sharedSessions) renew(id, owner string, r *renewal) {
	defer close(r.done)
	t := time.NewTicker(max(sh.lease/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			ctx, cancel := storeCtx()
			err := sh.store.Renew(ctx, id, owner, sh.now())
			cancel()
			if err != nil {
				sh.log.Warn("session lease not renewed", zap.String("session", id), zap.Error(err))
			}
		}
	}
}

func (sh *sharedSessions) release(id, owner string) {
	ctx, cancel := storeCtx()
	defer cancel()
	if err := sh.store.Release(ctx, id, owner); err != nil {
		sh.log.Warn("session lease not released; it expires", zap.String("session", id), zap.Error(err))
	}
}

// end stores the step (when it succeeded), then releases the lease. A
// session deleted meanwhile stays deleted; one another replica stepped
// after this step's lease expired keeps that step, and this one is a 409.
func (sh *sharedSessions) end(sess *session, step *nextaction.Step) error {
	sh.mu.Lock()
	r := sh.stepping[sess]
	delete(sh.stepping, sess)
	sh.bytes -= sess.bytes
	sh.mu.Unlock()
	if r != nil {
		close(r.stop)
		<-r.done
	}
	var err error
	if step != nil {
		ctx, cancel := storeCtx()
		err = sh.store.Append(ctx, sess.id, len(sess.steps), *step, sh.now())
		cancel()
		switch {
		case errors.Is(err, sessionstore.ErrNotFound):
			err = nil // deleted meanwhile
		case errors.Is(err, sessionstore.ErrConflict):
			err = &requestError{conflict: true, code: "session_conflict", msg: fmt.Sprintf(
				"Session %q took another step elsewhere while this one ran (its lease expired); this step was not recorded.", sess.id)}
		default:
			err = storeFailure(sh.log, "append", err)
		}
	}
	sh.release(sess.id, sess.lease)
	return err
}

func (sh *sharedSessions) remove(id string) (string, error) {
	if !plausible(id) {
		return "", sessionNotFound(id, sh.ttl)
	}
	ctx, cancel := storeCtx()
	defer cancel()
	if _, err := sh.store.Get(ctx, id, sh.now()); err != nil {
		return "", sh.lookupError("get", id, err)
	}
	if err := sh.store.Delete(ctx, []string{id}); err != nil {
		return "", storeFailure(sh.log, "delete", err)
	}
	return strings.Clone(id), nil
}

// held is the sessions with a step in flight on this replica and their
// text: the store holds the rest.
func (sh *sharedSessions) held() (int, int64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.stepping), sh.bytes
}

// sweep does nothing: the store expires idle sessions.
func (sh *sharedSessions) sweep() {}

func (sh *sharedSessions) close() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.closed = true
}
