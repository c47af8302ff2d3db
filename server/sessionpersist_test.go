package server_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/server"
	"github.com/nextact/nextact/sessionstore"
	"github.com/nextact/nextact/sessionstore/boltstore"
)

// faultyStore is the embedded store with failures on demand.
type faultyStore struct {
	*boltstore.Store
	failCreate, failAppend atomic.Bool
}

var errInjected = errors.New("injected store failure")

func (f *faultyStore) Create(ctx context.Context, rec sessionstore.Record) error {
	if f.failCreate.Load() {
		return errInjected
	}
	return f.Store.Create(ctx, rec)
}

func (f *faultyStore) Append(ctx context.Context, id string, index int, step nextaction.Step, lastUsed time.Time) error {
	if f.failAppend.Load() {
		return errInjected
	}
	return f.Store.Append(ctx, id, index, step, lastUsed)
}

var _ server.SessionStore = (*faultyStore)(nil)

func storedSessions(t *testing.T, st server.SessionStore) map[string]sessionstore.Record {
	t.Helper()
	recs, err := st.All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]sessionstore.Record{}
	for _, r := range recs {
		out[r.ID] = r
	}
	return out
}

// Sessions are written through: creation, each step (with its LastUsed)
// and deletion reach the store before the answer; a store that refuses a
// change is a 503 session_store_unavailable and the session stays as it
// was; a new server on the same store serves the live sessions with their
// history and policy and drops the expired ones from the store.
func TestSessionStoreWriteThrough(t *testing.T) {
	t.Parallel()
	bolt, err := boltstore.Open(filepath.Join(t.TempDir(), "sessions.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bolt.Close() })
	store := &faultyStore{Store: bolt}
	clock := newTestClock()
	cfg := server.Config{SessionTTL: 10 * time.Minute}
	e := newSessionEnv(t, sessionEnvOptions{clock: clock, cfg: cfg, sessions: store})

	a := e.createSession(t, `{"model":"`+testModel+`","persona":"A frugal student.","history":{"policy":"strict","max_tokens":2000}}`)
	e.step(t, a.ID, `{"page":`+mustJSON(t, shopPage(1))+`}`)
	clock.advance(time.Minute)
	e.step(t, a.ID, `{"page":`+mustJSON(t, shopPage(2))+`}`)
	rec := storedSessions(t, store)[a.ID]
	if len(rec.Steps) != 2 || rec.Persona != "A frugal student." || rec.History != (nextaction.HistoryPolicy{Policy: "strict", MaxTokens: 2000}) ||
		!rec.LastUsed.Equal(clock.now()) || rec.Steps[1].Page != shopPage(2) {
		t.Fatalf("stored %+v", rec)
	}

	store.failAppend.Store(true)
	resp, b := e.do(t, http.MethodPost, "/v1/sessions/"+a.ID+"/steps", `{"page":`+mustJSON(t, shopPage(3))+`}`)
	wantErr(t, "step with a failing store", resp, b, http.StatusServiceUnavailable, "session_store_unavailable")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if got := e.getSession(t, a.ID); len(got.Steps) != 2 {
		t.Fatalf("a step the store refused was recorded: %d steps", len(got.Steps))
	}
	store.failAppend.Store(false)
	e.step(t, a.ID, `{"page":`+mustJSON(t, shopPage(3))+`}`)
	if got, rec := e.getSession(t, a.ID), storedSessions(t, store)[a.ID]; len(got.Steps) != 3 || len(rec.Steps) != 3 {
		t.Fatalf("%d steps held, %d stored", len(got.Steps), len(rec.Steps))
	}

	store.failCreate.Store(true)
	resp, b = e.do(t, http.MethodPost, "/v1/sessions", `{"model":"`+testModel+`"}`)
	wantErr(t, "create with a failing store", resp, b, http.StatusServiceUnavailable, "session_store_unavailable")
	store.failCreate.Store(false)
	if n := len(storedSessions(t, store)); n != 1 {
		t.Fatalf("%d sessions stored after a refused create", n)
	}
	resp, b = e.do(t, http.MethodGet, "/metrics", "")
	if got := value(parseMetrics(t, string(b)), "nextact_sessions_open"); resp.StatusCode != 200 || got != 1 {
		t.Fatalf("a refused create is held: %v sessions open", got)
	}

	gone := e.createSession(t, `{"model":"`+testModel+`"}`)
	if resp, b := e.do(t, http.MethodDelete, "/v1/sessions/"+gone.ID, ""); resp.StatusCode != 200 {
		t.Fatalf("delete: %d %s", resp.StatusCode, b)
	}
	if _, ok := storedSessions(t, store)[gone.ID]; ok {
		t.Fatal("a deleted session is still stored")
	}

	// stale idles past the TTL while a steps; then a new server on the
	// same store.
	stale := e.createSession(t, `{"model":"`+testModel+`"}`)
	clock.advance(6 * time.Minute)
	e.step(t, a.ID, `{"page":`+mustJSON(t, shopPage(4))+`}`)
	clock.advance(5 * time.Minute)
	e2 := newSessionEnv(t, sessionEnvOptions{clock: clock, cfg: cfg, sessions: store})
	got := e2.getSession(t, a.ID)
	if len(got.Steps) != 4 || got.Persona != "A frugal student." || got.Steps[3].Page != shopPage(4) {
		t.Fatalf("after the restart: %+v", got)
	}
	resp, b = e2.do(t, http.MethodGet, "/v1/sessions/"+stale.ID, "")
	wantErr(t, "an expired session after the restart", resp, b, http.StatusNotFound, "session_not_found")
	if _, ok := storedSessions(t, store)[stale.ID]; ok {
		t.Fatal("the expired session is still stored after the restart")
	}
	// The restarted server's step continues the history.
	e2.step(t, a.ID, `{"page":`+mustJSON(t, shopPage(5))+`}`)
	if rec := storedSessions(t, store)[a.ID]; len(rec.Steps) != 5 {
		t.Fatalf("%d steps stored after the restart's step", len(rec.Steps))
	}
}
