package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/server"
)

const sessionCtx = 4096

// testClock is a goroutine-safe clock that tests move by hand.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(testNow.UnixNano())
	return c
}

func (c *testClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeActions serves next actions over the fake vocabulary: bytes are
// tokens 0..255, the rest are control tokens.
func fakeActions(t testing.TB) actionsFunc {
	return func(tok server.Tokenizer, ctxLen int) (*nextaction.Grammars, *nextaction.Planner) {
		pieces := make([]string, vocabSize)
		special := make([]bool, vocabSize)
		for i := range pieces {
			if i < 256 {
				pieces[i] = string([]byte{byte(i)})
			} else {
				special[i] = true
			}
		}
		v, err := nextaction.NewVocab(pieces, special, []int32{eogToken, eotToken})
		if err != nil {
			t.Fatal(err)
		}
		g, err := nextaction.NewGrammars(v, nextaction.NewGrammarCache(0), nextaction.SchemaLimits{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := nextaction.NewPlanner(nextaction.PlannerConfig{
			ChatFormat: models.FormatLlama3, Tokenizer: tok, Grammars: g, DefaultFormat: nextaction.FormatPrompted,
			Limits:       nextaction.Limits{MaxRationaleBytes: 40, MaxTextBytes: 24},
			MaxPageBytes: 4096, DefaultMaxTokens: 240, ContextLength: ctxLen, MaxMessages: server.DefaultMaxMessages,
		})
		if err != nil {
			t.Fatal(err)
		}
		return g, p
	}
}

type sessionEnvOptions struct {
	cfg   server.Config
	clock *testClock
	slots int
	gate  bool
}

func newSessionEnv(t *testing.T, o sessionEnvOptions) *env {
	t.Helper()
	opts := envOptions{ctxLen: sessionCtx, cfg: o.cfg, actions: fakeActions(t), slots: o.slots, queue: 64}
	if o.clock != nil {
		opts.clock = o.clock.now
	}
	if o.gate {
		opts.engine = func(e *fakeEngine) { e.gate = make(chan struct{}) }
	}
	return newEnv(t, opts)
}

// shopPage is a page with a few clickable and input elements; n varies it.
func shopPage(n int) string {
	return fmt.Sprintf(`<div name="item_%d"><a name="item_%d.view_product" href="/p">Shirt %d</a>
<input name="search_input" placeholder="Search"><button name="buy_now">Buy now</button></div>`, n, n, n)
}

type sessionObj struct {
	ID        string            `json:"id"`
	Object    string            `json:"object"`
	Model     string            `json:"model"`
	Format    string            `json:"format"`
	Persona   string            `json:"persona"`
	Created   int64             `json:"created"`
	ExpiresAt int64             `json:"expires_at"`
	Steps     []nextaction.Step `json:"steps"`
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *env) createSession(t *testing.T, body string) sessionObj {
	t.Helper()
	resp, b := e.do(t, http.MethodPost, "/v1/sessions", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create session: status %d: %s", resp.StatusCode, b)
	}
	var s sessionObj
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) getSession(t *testing.T, id string) sessionObj {
	t.Helper()
	resp, b := e.do(t, http.MethodGet, "/v1/sessions/"+id, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("get session: status %d: %s", resp.StatusCode, b)
	}
	var s sessionObj
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// step runs one step and decodes its answer.
func (e *env) step(t *testing.T, id, body string) nextaction.NextActionResponse {
	t.Helper()
	resp, b := e.do(t, http.MethodPost, "/v1/sessions/"+id+"/steps", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("step: status %d: %s", resp.StatusCode, b)
	}
	return decodeAction(t, b)
}

func decodeAction(t *testing.T, b []byte) nextaction.NextActionResponse {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("decode answer: %v: %s", err, b)
	}
	if !strings.Contains(string(raw["usage"]), `"prompt_tokens_details":{"cached_tokens":`) {
		t.Errorf("usage lacks prompt_tokens_details.cached_tokens: %s", raw["usage"])
	}
	var r nextaction.NextActionResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// wantErr checks a response's status and error code.
func wantErr(t *testing.T, what string, resp *http.Response, b []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d: %s", what, resp.StatusCode, status, b)
	}
	if got := deref(decodeErr(t, b).Error.Code); got != code {
		t.Fatalf("%s: code %s, want %s", what, got, code)
	}
}

func TestSessionRoundTrip(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	e := newSessionEnv(t, sessionEnvOptions{clock: clock, cfg: server.Config{SessionTTL: 10 * time.Minute}})

	s := e.createSession(t, `{"model":"`+testModel+`","persona":"A frugal student."}`)
	if !strings.HasPrefix(s.ID, "sess_") || s.Object != "session" || s.Model != testModel || s.Format != "prompted" ||
		s.Persona != "A frugal student." || s.Created != testNow.Unix() || s.ExpiresAt != testNow.Add(10*time.Minute).Unix() || s.Steps == nil || len(s.Steps) != 0 {
		t.Fatalf("created session = %+v", s)
	}

	for i := range 3 {
		clock.advance(time.Minute)
		r := e.step(t, s.ID, `{"page":`+mustJSON(t, shopPage(i))+`,"temperature":0}`)
		if r.Action.Type == "" || r.Usage.PromptTokens == 0 || r.Usage.PromptTokensDetails == nil {
			t.Fatalf("step %d answer = %+v", i, r)
		}
		got := e.getSession(t, s.ID)
		if len(got.Steps) != i+1 {
			t.Fatalf("after step %d: %d steps", i, len(got.Steps))
		}
		want := nextaction.Step{Page: shopPage(i), Action: r.Action, Rationale: r.Rationale}
		if !reflect.DeepEqual(got.Steps[i], want) {
			t.Fatalf("step %d recorded as %+v, want %+v", i, got.Steps[i], want)
		}
		if got.ExpiresAt != clock.now().Add(10*time.Minute).Unix() {
			t.Errorf("step %d: expires_at %d, want %d", i, got.ExpiresAt, clock.now().Add(10*time.Minute).Unix())
		}
	}

	// A failed step (too large a page, too few max_tokens, no page) adds
	// nothing.
	for _, body := range []string{
		`{"page":` + mustJSON(t, shopPage(9)+strings.Repeat("<p>x</p>", 600)) + `}`,
		`{"page":` + mustJSON(t, shopPage(9)) + `,"max_tokens":1}`, `{}`,
	} {
		resp, b := e.do(t, http.MethodPost, "/v1/sessions/"+s.ID+"/steps", body)
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("bad step %s: status %d: %s", body, resp.StatusCode, b)
		}
	}
	if n := len(e.getSession(t, s.ID).Steps); n != 3 {
		t.Fatalf("after failed steps: %d steps, want 3", n)
	}
	held := len("A frugal student.")
	for _, st := range e.getSession(t, s.ID).Steps {
		held += len(st.Page) + len(st.Rationale) + len(st.Action.Type) + len(st.Action.Name) + len(st.Action.Text)
	}
	e.wantSessionGauges(t, 1, held)

	resp, b := e.do(t, http.MethodDelete, "/v1/sessions/"+s.ID, "")
	if resp.StatusCode != http.StatusOK || string(b) != `{"id":"`+s.ID+`","object":"session.deleted","deleted":true}` {
		t.Fatalf("delete: status %d: %s", resp.StatusCode, b)
	}
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/sessions/" + s.ID, ""},
		{http.MethodDelete, "/v1/sessions/" + s.ID, ""},
		{http.MethodPost, "/v1/sessions/" + s.ID + "/steps", `{"page":` + mustJSON(t, shopPage(1)) + `}`},
		{http.MethodGet, "/v1/sessions/sess_unknown", ""},
	} {
		resp, b := e.do(t, r.method, r.path, r.body)
		wantErr(t, r.method+" "+r.path, resp, b, http.StatusNotFound, "session_not_found")
	}
	if n := server.SessionCount(e.srv); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
	e.wantSessionGauges(t, 0, 0)
}

// wantSessionGauges checks the sessions' gauges on /metrics.
func (e *env) wantSessionGauges(t *testing.T, open, bytes int) {
	t.Helper()
	resp, b := e.do(t, http.MethodGet, "/metrics", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	fams := parseMetrics(t, string(b))
	if got := value(fams, "nextact_sessions_open"); got != float64(open) {
		t.Errorf("nextact_sessions_open %v, want %d", got, open)
	}
	if got := value(fams, "nextact_session_history_bytes"); got != float64(bytes) {
		t.Errorf("nextact_session_history_bytes %v, want %d", got, bytes)
	}
}

func TestSessionCreateErrors(t *testing.T) {
	t.Parallel()
	e := newSessionEnv(t, sessionEnvOptions{})
	tests := []struct {
		body   string
		status int
		param  string
	}{
		{`{"model":"nope"}`, http.StatusNotFound, "model"},
		{`{"model":"` + mistralModel + `"}`, http.StatusNotFound, "model"}, // no actions
		{`{"model":"` + testModel + `","format":"chatty"}`, http.StatusBadRequest, "format"},
		{`{}`, http.StatusBadRequest, "model"},
		{`[]`, http.StatusBadRequest, "<null>"},
	}
	for _, tt := range tests {
		resp, b := e.do(t, http.MethodPost, "/v1/sessions", tt.body)
		if resp.StatusCode != tt.status || deref(decodeErr(t, b).Error.Param) != tt.param {
			t.Errorf("%s: status %d: %s; want %d with param %s", tt.body, resp.StatusCode, b, tt.status, tt.param)
		}
	}
	if s := e.createSession(t, `{"model":"`+testModel+`","format":" FineTuned "}`); s.Format != "finetuned" {
		t.Errorf("format = %q, want finetuned", s.Format)
	}
}

func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	const ttl = time.Hour // the janitor's real ticker does not fire in this test
	e := newSessionEnv(t, sessionEnvOptions{clock: clock, cfg: server.Config{SessionTTL: ttl}})
	page := `{"page":` + mustJSON(t, shopPage(0)) + `}`

	a := e.createSession(t, `{"model":"`+testModel+`"}`)
	b := e.createSession(t, `{"model":"`+testModel+`"}`)
	e.step(t, a.ID, page)

	// Steps and GETs keep a session alive past its first TTL.
	for range 3 {
		clock.advance(ttl - time.Second)
		e.getSession(t, a.ID)
	}
	clock.advance(ttl - time.Second)
	e.step(t, a.ID, page)
	if n := len(e.getSession(t, a.ID).Steps); n != 2 {
		t.Fatalf("kept-alive session has %d steps, want 2", n)
	}
	// b was idle all along: gone on access.
	resp, body := e.do(t, http.MethodGet, "/v1/sessions/"+b.ID, "")
	wantErr(t, "expired session", resp, body, http.StatusNotFound, "session_not_found")

	// The janitor removes idle sessions without an access.
	c := e.createSession(t, `{"model":"`+testModel+`"}`)
	clock.advance(ttl)
	server.SweepSessions(e.srv)
	if n := server.SessionCount(e.srv); n != 0 {
		t.Fatalf("%d sessions after the TTL and a sweep", n)
	}
	e.wantSessionGauges(t, 0, 0) // expired histories are no longer counted
	for _, id := range []string{a.ID, c.ID} {
		resp, body := e.do(t, http.MethodPost, "/v1/sessions/"+id+"/steps", page)
		wantErr(t, "step on expired session", resp, body, http.StatusNotFound, "session_not_found")
	}
}

// The janitor runs on its own, on a real ticker at TTL/4.
func TestSessionJanitor(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	e := newSessionEnv(t, sessionEnvOptions{clock: clock, cfg: server.Config{SessionTTL: 100 * time.Millisecond}})
	e.createSession(t, `{"model":"`+testModel+`"}`)
	clock.advance(time.Second)
	waitFor(t, "the janitor to sweep", func() bool { return server.SessionCount(e.srv) == 0 })
}

func TestSessionBusy(t *testing.T) {
	t.Parallel()
	e := newSessionEnv(t, sessionEnvOptions{gate: true})
	s := e.createSession(t, `{"model":"`+testModel+`"}`)
	page := `{"page":` + mustJSON(t, shopPage(0)) + `}`

	first := make(chan nextaction.NextActionResponse, 1)
	go func() {
		resp, b := e.do(t, http.MethodPost, "/v1/sessions/"+s.ID+"/steps", page)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("first step: status %d: %s", resp.StatusCode, b)
		}
		var r nextaction.NextActionResponse
		_ = json.Unmarshal(b, &r)
		first <- r
	}()
	waitFor(t, "the first step to run", func() bool { return e.sched.Stats().Running == 1 })

	resp, b := e.do(t, http.MethodPost, "/v1/sessions/"+s.ID+"/steps", page)
	wantErr(t, "concurrent step", resp, b, http.StatusConflict, "session_busy")
	// A busy session still reads, without the step in flight.
	if n := len(e.getSession(t, s.ID).Steps); n != 0 {
		t.Fatalf("%d steps while the first is in flight", n)
	}

	close(e.eng.gate)
	r := <-first
	got := e.getSession(t, s.ID)
	if len(got.Steps) != 1 || !reflect.DeepEqual(got.Steps[0].Action, r.Action) {
		t.Fatalf("after the first step: %+v, answer %+v", got.Steps, r)
	}
	e.step(t, s.ID, page) // no longer busy
}

// A step that panics (here in tokenizing) answers 500 and leaves the
// session free: the next step runs and the session still expires.
func TestSessionStepPanicFreesSession(t *testing.T) {
	t.Parallel()
	e := newSessionEnv(t, sessionEnvOptions{})
	s := e.createSession(t, `{"model":"`+testModel+`"}`)
	e.tok.mu.Lock()
	e.tok.panicOn = "PANIC-PAGE"
	e.tok.mu.Unlock()
	resp, b := e.do(t, http.MethodPost, "/v1/sessions/"+s.ID+"/steps", `{"page":"<a name=\"x\">PANIC-PAGE</a>"}`)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("panicking step: status %d: %s", resp.StatusCode, b)
	}
	r := e.step(t, s.ID, `{"page":`+mustJSON(t, shopPage(0))+`}`)
	if r.Action.Type == "" {
		t.Fatalf("step after the panic: %+v", r)
	}
	if got := e.getSession(t, s.ID); len(got.Steps) != 1 {
		t.Fatalf("history after a failed and a good step: %+v", got.Steps)
	}
}

func TestSessionLimit(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	e := newSessionEnv(t, sessionEnvOptions{clock: clock, cfg: server.Config{MaxSessions: 3, SessionTTL: time.Hour}})
	create := `{"model":"` + testModel + `"}`
	var ids []string
	for range 3 {
		ids = append(ids, e.createSession(t, create).ID)
		clock.advance(time.Minute)
	}
	resp, b := e.do(t, http.MethodPost, "/v1/sessions", create)
	wantErr(t, "one session too many", resp, b, http.StatusServiceUnavailable, "too_many_sessions")
	// The oldest session expires in 57 minutes.
	if got := resp.Header.Get("Retry-After"); got != "3420" {
		t.Errorf("Retry-After = %q, want 3420", got)
	}

	if resp, b := e.do(t, http.MethodDelete, "/v1/sessions/"+ids[0], ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d: %s", resp.StatusCode, b)
	}
	e.createSession(t, create)
	// Expired sessions make room.
	clock.advance(time.Hour)
	for range 3 {
		e.createSession(t, create)
	}
	if n := server.SessionCount(e.srv); n != 3 {
		t.Fatalf("%d sessions, want 3", n)
	}
}

// A session's steps answer exactly as /v1/actions/next given the same
// history, persona and format.
func TestSessionStepsMatchStateless(t *testing.T) {
	t.Parallel()
	e := newSessionEnv(t, sessionEnvOptions{})
	for _, format := range []string{"prompted", "finetuned"} {
		t.Run(format, func(t *testing.T) {
			const persona = "Retired teacher who compares prices."
			s := e.createSession(t, `{"model":"`+testModel+`","persona":`+mustJSON(t, persona)+`,"format":"`+format+`"}`)
			prev := 0
			for i := range 4 {
				sampling := `"temperature":0,"seed":7`
				if i%2 == 1 {
					sampling = `"temperature":0.9,"seed":42`
				}
				history := e.getSession(t, s.ID).Steps
				stateless := mustJSON(t, map[string]any{
					"model": testModel, "page": shopPage(i), "history": history, "persona": persona, "format": format,
				})
				stateless = stateless[:len(stateless)-1] + "," + sampling + "}"
				resp, b := e.do(t, http.MethodPost, "/v1/actions/next", stateless)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("stateless: status %d: %s", resp.StatusCode, b)
				}
				want := decodeAction(t, b)
				got := e.step(t, s.ID, `{"page":`+mustJSON(t, shopPage(i))+`,`+sampling+`}`)
				if !reflect.DeepEqual(got.Action, want.Action) || got.Rationale != want.Rationale || !reflect.DeepEqual(got.Usage, want.Usage) {
					t.Fatalf("step %d (%s): session answered %+v, stateless %+v", i, sampling, got, want)
				}
				if i > 0 && got.Usage.PromptTokens <= prev {
					t.Fatalf("step %d: %d prompt tokens, not more than the step before (%d)", i, got.Usage.PromptTokens, prev)
				}
				prev = got.Usage.PromptTokens
			}
		})
	}
}

// 1,000 sessions opened, stepped and closed leave nothing behind.
func TestSessionChurn(t *testing.T) {
	t.Parallel()
	e := newSessionEnv(t, sessionEnvOptions{slots: 8})
	const n, workers = 1000, 16
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				if err := churnSession(e, i); err != nil {
					errs <- fmt.Errorf("session %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := server.SessionCount(e.srv); c != 0 {
		t.Fatalf("%d sessions left", c)
	}
	e.wantSessionGauges(t, 0, 0)
	waitFor(t, "the scheduler to go idle", func() bool {
		st := e.sched.Stats()
		return st.Running == 0 && st.Waiting == 0 && st.ReservedTokens == 0
	})
}

// churnSession opens a session, runs one or two steps, checks the history
// and deletes it. It runs off the test's goroutine, so it returns errors.
func churnSession(e *env, i int) error {
	call := func(method, path, body string, v any) error {
		req, err := http.NewRequest(method, path, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.srv.App().Test(req, 20000)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %s: status %d: %s", method, path, resp.StatusCode, b)
		}
		return json.Unmarshal(b, v)
	}
	var s sessionObj
	if err := call(http.MethodPost, "/v1/sessions", `{"model":"`+testModel+`"}`, &s); err != nil {
		return err
	}
	steps := 1 + i%2
	for j := range steps {
		var r nextaction.NextActionResponse
		page, _ := json.Marshal(shopPage(j))
		if err := call(http.MethodPost, "/v1/sessions/"+s.ID+"/steps", `{"page":`+string(page)+`,"max_tokens":60}`, &r); err != nil {
			return err
		}
	}
	var got sessionObj
	if err := call(http.MethodGet, "/v1/sessions/"+s.ID, "", &got); err != nil {
		return err
	}
	if len(got.Steps) != steps {
		return fmt.Errorf("%d steps, want %d", len(got.Steps), steps)
	}
	var del map[string]any
	return call(http.MethodDelete, "/v1/sessions/"+s.ID, "", &del)
}

// Every endpoint's usage carries prompt_tokens_details.cached_tokens.
func TestUsageCachedTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{engine: func(f *fakeEngine) { f.eogAfter = 3 }})
	for _, r := range []struct{ path, body string }{
		{"/v1/chat/completions", chatBody("hi", "")},
		{"/v1/completions", completionBody("hi", "")},
		{"/v1/chat/completions", chatBody("hi", `"stream":true,"stream_options":{"include_usage":true}`)},
	} {
		resp, b := e.do(t, http.MethodPost, r.path, r.body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"prompt_tokens_details":{"cached_tokens":0}}`) {
			t.Errorf("%s %s: status %d, usage without cached_tokens: %s", r.path, r.body, resp.StatusCode, b)
		}
	}
}
