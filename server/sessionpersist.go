package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/sessionstore"
)

// SessionStore persists sessions so that they outlive the process: the
// server writes each change through to it (a session created, a step
// appended, a session deleted or expired) before it answers, and loads
// every stored session when it starts. sessionstore/boltstore implements
// it. MUST be goroutine-safe.
type SessionStore interface {
	// Create stores a new session.
	Create(ctx context.Context, rec sessionstore.Record) error
	// Append stores step as the index-th step of session id and moves its
	// LastUsed; sessionstore.ErrNotFound when the session is gone.
	Append(ctx context.Context, id string, index int, step nextaction.Step, lastUsed time.Time) error
	// Delete removes sessions; unknown ids are no error.
	Delete(ctx context.Context, ids []string) error
	// All returns every stored session, steps included.
	All(ctx context.Context) ([]sessionstore.Record, error)
}

// storeTimeout bounds one call to the SessionStore.
const storeTimeout = 10 * time.Second

// errSessionStore is a change the session store did not take: the request
// fails (503) and the session stays as it was.
var errSessionStore = errors.New("session store unavailable")

// storeFailure wraps a SessionStore failure for the client (503) and logs
// it; nil for nil.
func storeFailure(log *zap.Logger, op string, err error) error {
	if err == nil {
		return nil
	}
	log.Error("session store", zap.String("op", op), zap.Error(err))
	return fmt.Errorf("%w: %s: %w", errSessionStore, op, err)
}

// storeCtx is the context of one SessionStore call.
func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

// record is sess as the store keeps it, without steps.
func (sess *session) record() sessionstore.Record {
	return sessionstore.Record{ID: sess.id, Model: sess.model, Format: string(sess.format), Persona: sess.persona,
		History: sess.history, Created: sess.created, LastUsed: sess.lastUsed}
}

// load fills the memory from the store: every stored session that has not
// expired and whose model is served; the others are deleted from the
// store. Called once, before serving.
func (st *sessionStore) load(contextOf func(id string) (ctxLen int, ok bool)) error {
	if st.backend == nil {
		return nil
	}
	ctx, cancel := storeCtx()
	defer cancel()
	recs, err := st.backend.All(ctx)
	if err != nil {
		return fmt.Errorf("load sessions: %w", err)
	}
	now := st.now()
	var stale []string
	st.mu.Lock()
	for _, rec := range recs {
		ctxLen, ok := contextOf(rec.Model)
		format, ferr := nextaction.ParseFormat(rec.Format)
		pol, perr := rec.History.Normalize("history")
		if !ok || ferr != nil || perr != nil || !now.Before(rec.LastUsed.Add(st.ttl)) {
			stale = append(stale, rec.ID)
			continue
		}
		sess := &session{id: rec.ID, model: rec.Model, ctxLen: ctxLen, format: format, persona: rec.Persona, history: pol,
			created: rec.Created, lastUsed: rec.LastUsed, steps: rec.Steps}
		sess.bytes = int64(len(sess.persona))
		for _, s := range sess.steps {
			sess.bytes += stepBytes(s)
		}
		st.byID[sess.id] = sess
		st.bytes += sess.bytes
	}
	if len(st.byID) > 0 && !st.sweeper {
		st.sweeper = true
		go st.janitor()
	}
	st.mu.Unlock()
	st.log.Info("sessions loaded", zap.Int("sessions", len(recs)-len(stale)), zap.Int("dropped", len(stale)))
	if len(stale) > 0 {
		if err := st.backend.Delete(ctx, stale); err != nil {
			return fmt.Errorf("load sessions: drop expired: %w", err)
		}
	}
	return nil
}

// forget deletes ids from the store (expired or deleted sessions); a
// failure is logged: the next start drops them as expired.
func (st *sessionStore) forget(ids []string) {
	if st.backend == nil || len(ids) == 0 {
		return
	}
	ctx, cancel := storeCtx()
	defer cancel()
	if err := st.backend.Delete(ctx, ids); err != nil {
		st.log.Warn("session store: delete", zap.Int("sessions", len(ids)), zap.Error(err))
	}
}

// stepBytes is the text one step keeps, for the metrics and the limit.
func stepBytes(s nextaction.Step) int64 {
	return int64(len(s.Page) + len(s.Rationale) + len(s.Action.Type) + len(s.Action.Name) + len(s.Action.Text))
}
