package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nextact/nextact/server"
	"github.com/nextact/nextact/sessionstore/redisstore"
	"github.com/nextact/nextact/sessionstore/redisstore/redistest"
)

// Two servers sharing a real Redis: a session created on one steps on the
// other; a step in flight holds the session's lease past several lease
// periods (it is renewed), so the other server's step is a 409
// session_busy; MaxSessions holds across both; an idle session expires by
// the clock; DELETE on one is a 404 on the other.
func TestSharedSessions(t *testing.T) {
	t.Parallel()
	url := redistest.Start(t)
	// Renewed every third of it: long enough that a loaded machine's
	// scheduling delays (seen past 150 ms under make test) do not let it
	// lapse.
	const lease = time.Second
	clock := newTestClock()
	open := func() *redisstore.Store {
		st, err := redisstore.Open(context.Background(), url, redisstore.Options{TTL: 10 * time.Minute, MaxSessions: 2, Lease: lease})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	cfg := server.Config{SessionTTL: 10 * time.Minute, MaxSessions: 2, SessionLease: lease}
	a := newSessionEnv(t, sessionEnvOptions{clock: clock, cfg: cfg, sessions: open(), gate: true})
	b := newSessionEnv(t, sessionEnvOptions{clock: clock, cfg: cfg, sessions: open()})
	page := func(n int) string { return `{"page":` + mustJSON(t, shopPage(n)) + `}` }

	s := b.createSession(t, `{"model":"`+testModel+`","persona":"A frugal student."}`)
	b.step(t, s.ID, page(1))
	if got := a.getSession(t, s.ID); len(got.Steps) != 1 || got.Persona != "A frugal student." {
		t.Fatalf("the other server sees %+v", got)
	}

	done := make(chan int, 1)
	go func() {
		resp, _ := a.do(t, http.MethodPost, "/v1/sessions/"+s.ID+"/steps", page(2))
		done <- resp.StatusCode
	}()
	waitFor(t, "the step on a to run", func() bool { return a.sched.Stats().Running == 1 })
	time.Sleep(3 * lease) // unrenewed, the lease would have expired
	resp, body := b.do(t, http.MethodPost, "/v1/sessions/"+s.ID+"/steps", page(3))
	wantErr(t, "a step while the other server's runs", resp, body, http.StatusConflict, "session_busy")
	close(a.eng.gate)
	if code := <-done; code != http.StatusOK {
		t.Fatalf("the step on a: %d", code)
	}
	b.step(t, s.ID, page(3))
	if got := b.getSession(t, s.ID); len(got.Steps) != 3 || got.Steps[1].Page != shopPage(2) {
		t.Fatalf("after steps on both: %+v", got.Steps)
	}

	other := a.createSession(t, `{"model":"`+testModel+`"}`)
	resp, body = b.do(t, http.MethodPost, "/v1/sessions", `{"model":"`+testModel+`"}`)
	wantErr(t, "a third session across both servers", resp, body, http.StatusServiceUnavailable, "too_many_sessions")

	clock.advance(6 * time.Minute)
	b.getSession(t, s.ID) // a read restarts the TTL
	clock.advance(5 * time.Minute)
	resp, body = a.do(t, http.MethodGet, "/v1/sessions/"+other.ID, "")
	wantErr(t, "an idle session past the TTL", resp, body, http.StatusNotFound, "session_not_found")
	if resp, body := a.do(t, http.MethodDelete, "/v1/sessions/"+s.ID, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	resp, body = b.do(t, http.MethodPost, "/v1/sessions/"+s.ID+"/steps", page(4))
	wantErr(t, "a step on a session deleted on the other server", resp, body, http.StatusNotFound, "session_not_found")
	for _, id := range []string{"x", "sess_" + strings.Repeat("A", 200), "sess_%00%ff"} {
		resp, body = b.do(t, http.MethodGet, "/v1/sessions/"+id, "")
		wantErr(t, "GET of an id no session has", resp, body, http.StatusNotFound, "session_not_found")
	}
}
