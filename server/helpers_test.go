package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/server"
)

const (
	testModel    = "test-llama"
	mistralModel = "test-mistral"
	testCtx      = 512
	stepTokens   = 64
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// envOptions shape a test server; zero fields take small defaults.
type envOptions struct {
	slots, queue int
	ctxLen       int
	cfg          server.Config
	engine       func(*fakeEngine) // sets knobs before the scheduler starts
	extraModels  []*server.Model
	skipShutdown bool             // the test shuts the server down itself
	logger       *zap.Logger      // zaptest's when nil
	clock        func() time.Time // testNow when nil
	actions      actionsFunc      // next actions for testModel; nil: none
	// generator, when set, wraps testModel's generator (the scheduler).
	generator func(server.Generator) server.Generator
	sessions  server.SessionStore
	// source, when set, serves the models through a ModelSource it wraps
	// around them instead of Deps.Models.
	source func([]*server.Model) server.ModelSource
}

// actionsFunc builds a model's grammars and next-action planner.
type actionsFunc func(tok server.Tokenizer, ctxLen int) (*nextaction.Grammars, *nextaction.Planner)

type env struct {
	srv   *server.Server
	sched *batching.Scheduler
	eng   *fakeEngine
	tok   *fakeTokenizer
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.slots == 0 {
		o.slots = 2
	}
	if o.queue == 0 {
		o.queue = 8
	}
	if o.ctxLen == 0 {
		o.ctxLen = testCtx
	}
	eng := newFakeEngine()
	if o.engine != nil {
		o.engine(eng)
	}
	log := o.logger
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	engine, vocab := eng.engine()
	sched, err := batching.New(engine, vocab, batching.Config{
		Slots: o.slots, QueueSize: o.queue, StepTokens: stepTokens, CtxPerSlot: o.ctxLen,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if eng.gate != nil {
			select {
			case <-eng.gate:
			default:
				close(eng.gate)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sched.Close(ctx); err != nil {
			t.Errorf("close scheduler: %v", err)
		}
	})
	tok := &fakeTokenizer{}
	ms := []*server.Model{
		{ID: testModel, Created: testNow.Add(-time.Hour), OwnedBy: "tests", ContextLength: o.ctxLen,
			Format: models.FormatLlama3, BOS: []int32{'^'}, Tokenizer: tok, Vocab: vocab, Generator: sched},
		{ID: mistralModel, Created: testNow.Add(-time.Hour), ContextLength: o.ctxLen,
			Format: models.FormatMistral, Tokenizer: tok, Generator: sched},
	}
	if o.actions != nil {
		ms[0].Grammars, ms[0].Actions = o.actions(tok, o.ctxLen)
	}
	if o.generator != nil {
		ms[0].Generator = o.generator(sched)
	}
	clock := o.clock
	if clock == nil {
		clock = func() time.Time { return testNow }
	}
	if o.cfg.RequestTimeout == 0 {
		o.cfg.RequestTimeout = 20 * time.Second
	}
	deps := server.Deps{Logger: log, Clock: clock, Models: append(ms, o.extraModels...), Sessions: o.sessions}
	if o.source != nil {
		deps.Source, deps.Models = o.source(deps.Models), nil
	}
	srv, err := server.New(o.cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if !o.skipShutdown {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
	return &env{srv: srv, sched: sched, eng: eng, tok: tok}
}

// do sends one request through app.Test and returns the response and body.
func (e *env) do(t testing.TB, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.App().Test(req, 20000)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, b
}

// apiErr is OpenAI's error body as a client decodes it.
type apiErr struct {
	Error *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// decodeErr checks that b is exactly OpenAI's error shape.
func decodeErr(t testing.TB, b []byte) apiErr {
	t.Helper()
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("error body is not {\"error\":{...}}: %v: %s", err, b)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := raw["error"][k]; !ok {
			t.Fatalf("error body lacks %q: %s", k, b)
		}
	}
	var e apiErr
	if err := json.Unmarshal(b, &e); err != nil || e.Error == nil {
		t.Fatalf("decode error body: %v: %s", err, b)
	}
	return e
}

func deref(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

// chatBody is a greedy chat request for the test model.
func chatBody(content string, extra string) string {
	b, _ := json.Marshal(content)
	s := `{"model":"` + testModel + `","messages":[{"role":"user","content":` + string(b) + `}],"temperature":0`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func completionBody(prompt string, extra string) string {
	b, _ := json.Marshal(prompt)
	s := `{"model":"` + testModel + `","prompt":` + string(b) + `,"temperature":0`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

// llama3Prompt is what the fake tokenizer sees for one user message.
func llama3Prompt(content string) string {
	return "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + content +
		"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
}

// sseEvent is one "data:" payload; done marks [DONE].
type sseEvent struct {
	data []byte
	done bool
}

// readEvents reads an SSE body to its end. Comments are skipped; every
// event must be a single data line followed by a blank line.
func readEvents(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	var evs []sseEvent
	br := bufio.NewReader(r)
	for {
		ev, err := nextEvent(br)
		if errors.Is(err, io.EOF) {
			return evs
		}
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		evs = append(evs, ev)
	}
}

func nextEvent(br *bufio.Reader) (sseEvent, error) {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return sseEvent{}, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" || strings.HasPrefix(line, ":") {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			return sseEvent{}, errors.New("unexpected line " + line)
		}
		blank, err := br.ReadString('\n')
		if err != nil {
			return sseEvent{}, err
		}
		if blank != "\n" {
			return sseEvent{}, errors.New("event not followed by a blank line")
		}
		return sseEvent{data: []byte(data), done: data == "[DONE]"}, nil
	}
}

// streamChunk is a chunk of either endpoint as a client decodes it.
type streamChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta *struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage           `json:"usage"`
	Error *json.RawMessage `json:"error"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// serve runs the server on a real listener until the test ends.
func serve(t *testing.T, e *env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.srv.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
