package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/server"
)

// leasingSource is a ModelSource over fixed models that counts leases and
// answers some names with errors, as the registry would.
type leasingSource struct {
	byID   map[string]*server.Model
	errs   map[string]error
	slow   map[string]bool // Acquire waits for ctx
	loaded map[string]bool

	mu       sync.Mutex
	acquired int
	released int
}

func newLeasingSource(ms []*server.Model) *leasingSource {
	s := &leasingSource{byID: map[string]*server.Model{}, errs: map[string]error{}, slow: map[string]bool{}, loaded: map[string]bool{}}
	for _, m := range ms {
		s.byID[m.ID] = m
	}
	return s
}

func (s *leasingSource) Acquire(ctx context.Context, name string) (*server.Model, func(), error) {
	if err := s.errs[name]; err != nil {
		return nil, nil, err
	}
	if s.slow[name] {
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}
	m := s.byID[name]
	if m == nil {
		return nil, nil, server.ErrModelNotFound
	}
	s.mu.Lock()
	s.acquired++
	s.mu.Unlock()
	var once sync.Once
	return m, func() {
		once.Do(func() {
			s.mu.Lock()
			s.released++
			s.mu.Unlock()
		})
	}, nil
}

func (s *leasingSource) List() []server.ModelStatus {
	out := []server.ModelStatus{}
	for _, id := range []string{testModel, mistralModel} {
		m := s.byID[id]
		out = append(out, server.ModelStatus{ID: id, Aliases: []string{"team/" + id + ":latest"}, Created: m.Created,
			ContextLength: m.ContextLength, Loaded: s.loaded[id]})
	}
	return out
}

// leases waits until every acquired lease is released and returns the
// count (a stream releases after its last event is written).
func (s *leasingSource) leases(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		a, r := s.acquired, s.released
		s.mu.Unlock()
		if a == r || time.Now().After(deadline) {
			if a != r {
				t.Fatalf("%d leases acquired, %d released", a, r)
			}
			return a
		}
		time.Sleep(time.Millisecond)
	}
}

func sourceEnv(t *testing.T, o envOptions) (*env, *leasingSource) {
	var src *leasingSource
	o.source = func(ms []*server.Model) server.ModelSource {
		src = newLeasingSource(ms)
		return src
	}
	return newEnv(t, o), src
}

// Every model a request names goes through the source: the errors of a
// registry become OpenAI-shaped answers (404 model_not_found, 503
// insufficient_memory with or without Retry-After, 500 model_load_failed,
// 503 queue_timeout when the load outlasts the wait bound), and every
// lease taken is released, by streams after their last event too.
func TestAcquireThroughSource(t *testing.T) {
	e, src := sourceEnv(t, envOptions{ctxLen: sessionCtx, cfg: server.Config{ModelLoadWait: 50 * time.Millisecond}, actions: fakeActions(t)})
	src.errs["full"] = &server.InsufficientMemoryError{Model: "full", RetryAfter: 7 * time.Second, Detail: "it needs 9 GiB"}
	src.errs["never"] = &server.InsufficientMemoryError{Model: "never", Never: true, Detail: "it needs 90 GiB"}
	src.errs["broken"] = &server.ModelLoadError{Model: "broken", Err: errors.New("bad tensor")}
	src.slow["loading"] = true
	for _, tc := range []struct {
		model, code, retryAfter string
		status                  int
	}{
		{"nope", "model_not_found", "", http.StatusNotFound},
		{"full", "insufficient_memory", "7", http.StatusServiceUnavailable},
		{"never", "insufficient_memory", "", http.StatusServiceUnavailable},
		{"broken", "model_load_failed", "", http.StatusInternalServerError},
		{"loading", "queue_timeout", "5", http.StatusServiceUnavailable},
	} {
		for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/actions/next", "/v1/sessions"} {
			body := strings.Replace(chatBody("hi", ""), testModel, tc.model, 1)
			switch path {
			case "/v1/completions":
				body = strings.Replace(completionBody("hi", ""), testModel, tc.model, 1)
			case "/v1/actions/next", "/v1/sessions":
				body = `{"model":"` + tc.model + `","page":"<p>x</p>"}`
			}
			resp, b := e.do(t, http.MethodPost, path, body)
			got := decodeErr(t, b)
			if resp.StatusCode != tc.status || deref(got.Error.Code) != tc.code || resp.Header.Get("Retry-After") != tc.retryAfter {
				t.Errorf("%s %s: %d %s Retry-After %q, want %d %s %q", path, tc.model, resp.StatusCode, deref(got.Error.Code),
					resp.Header.Get("Retry-After"), tc.status, tc.code, tc.retryAfter)
			}
			if tc.model == "broken" && strings.Contains(string(b), "bad tensor") {
				t.Errorf("the load error's detail reached the client: %s", b)
			}
		}
	}
	resp, b := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("hi", `"max_tokens":3`))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("chat: %d %s", resp.StatusCode, b)
	}
	resp, b = e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("hi", `"max_tokens":3,"stream":true`))
	if evs := readEvents(t, bytes.NewReader(b)); resp.StatusCode != http.StatusOK || len(evs) == 0 || !evs[len(evs)-1].done {
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	resp, _ = e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("hi", `"max_tokens":-1`))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad max_tokens: %d", resp.StatusCode)
	}
	sess := e.createSession(t, `{"model":"`+testModel+`"}`)
	e.step(t, sess.ID, `{"page":"<p>x</p>","max_tokens":64}`)
	if n := src.leases(t); n != 5 {
		t.Errorf("%d leases, want 5 (chat, stream, bad request, session, step)", n)
	}
}

// /v1/models lists the source's models with context length and load
// state; GET /v1/models/{id} answers one by ID or alias (slashes and
// percent-encoding included) and 404s in OpenAI's shape otherwise.
func TestModelsListing(t *testing.T) {
	e, src := sourceEnv(t, envOptions{})
	src.loaded[mistralModel] = true
	resp, b := e.do(t, http.MethodGet, "/v1/models", "")
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID            string `json:"id"`
			Object        string `json:"object"`
			OwnedBy       string `json:"owned_by"`
			ContextLength int    `json:"context_length"`
			Loaded        bool   `json:"loaded"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &list); err != nil || resp.StatusCode != http.StatusOK || list.Object != "list" || len(list.Data) != 2 {
		t.Fatalf("/v1/models: %d %s", resp.StatusCode, b)
	}
	if d := list.Data[1]; d.ID != mistralModel || !d.Loaded || d.ContextLength != testCtx || d.OwnedBy != "nextact" || d.Object != "model" || list.Data[0].Loaded {
		t.Errorf("/v1/models: %s", b)
	}
	for _, path := range []string{"/v1/models/" + testModel, "/v1/models/team/" + testModel + ":latest", "/v1/models/team%2F" + testModel + "%3Alatest"} {
		resp, b := e.do(t, http.MethodGet, path, "")
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"id":"`+testModel+`"`) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
	}
	resp, b = e.do(t, http.MethodGet, "/v1/models/gpt-4", "")
	if got := decodeErr(t, b); resp.StatusCode != http.StatusNotFound || deref(got.Error.Code) != "model_not_found" {
		t.Errorf("GET /v1/models/gpt-4: %d %s", resp.StatusCode, b)
	}
}

// A stream holds its model's lease until its last event, after its
// handler has returned: the registry must not unload a model mid-stream.
func TestStreamHoldsLease(t *testing.T) {
	gate := make(chan struct{})
	e, src := sourceEnv(t, envOptions{engine: func(f *fakeEngine) { f.gate = gate }})
	done := make(chan []byte)
	go func() {
		_, b := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("hi", `"max_tokens":3,"stream":true`))
		done <- b
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.sched.Stats().Running == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the handler has long returned
	src.mu.Lock()
	held := src.acquired - src.released
	src.mu.Unlock()
	if held != 1 {
		t.Errorf("%d leases held while the stream runs, want 1", held)
	}
	close(gate)
	if evs := readEvents(t, bytes.NewReader(<-done)); len(evs) == 0 || !evs[len(evs)-1].done {
		t.Fatal("stream did not finish")
	}
	if n := src.leases(t); n != 1 {
		t.Errorf("%d leases, want 1", n)
	}
}

// A model load is bounded by the request timeout on every endpoint that
// takes a model, including those whose handlers start no request context
// of their own (/detokenize, /api/show), even with no --model-load-wait:
// the request is answered, never left waiting on the load.
func TestModelLoadBoundedByRequestTimeout(t *testing.T) {
	e, src := sourceEnv(t, envOptions{ctxLen: sessionCtx, cfg: server.Config{RequestTimeout: 100 * time.Millisecond}, actions: fakeActions(t)})
	src.slow["loading"] = true
	for _, c := range []struct{ path, body string }{
		{"/detokenize", `{"model":"loading","tokens":[1]}`},
		{"/tokenize", `{"model":"loading","content":"hi"}`},
		{"/api/show", `{"model":"loading"}`},
		{"/api/chat", `{"model":"loading","messages":[{"role":"user","content":"hi"}],"stream":false}`},
		{"/v1/chat/completions", strings.Replace(chatBody("hi", ""), testModel, "loading", 1)},
	} {
		start := time.Now()
		resp, b := e.do(t, http.MethodPost, c.path, c.body)
		if took := time.Since(start); resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusGatewayTimeout || took > 10*time.Second {
			t.Errorf("%s: %d after %v: %s", c.path, resp.StatusCode, took, b)
		}
	}
}
