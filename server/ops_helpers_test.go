package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/server"
)

// opsOptions shape a server for the operations tests (keys, limits,
// readiness, metrics); zero fields take small defaults.
type opsOptions struct {
	slots, queue int
	cfg          server.Config
	admission    admission.Config
	gpu          admission.GPUSignals
	gated        bool // every Decode waits until the test releases the engine
	extraModels  []*server.Model
	devices      []server.Device
}

type opsEnv struct {
	srv     *server.Server
	sched   *batching.Scheduler
	metrics *server.Metrics
	clock   *settableClock
	gate    chan struct{}
	release func() // lets every Decode run; idempotent
}

// settableClock is the clock of the server and the scheduler.
type settableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *settableClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newOpsEnv(t testing.TB, o opsOptions) *opsEnv {
	t.Helper()
	if o.slots == 0 {
		o.slots = 2
	}
	if o.queue == 0 {
		o.queue = 4
	}
	if o.cfg.RequestTimeout == 0 {
		o.cfg.RequestTimeout = 20 * time.Second
	}
	log := zaptest.NewLogger(t)
	e := &opsEnv{metrics: server.NewMetrics(), clock: &settableClock{t: testNow}}
	eng := newFakeEngine()
	var once sync.Once
	e.release = func() {}
	if o.gated {
		e.gate = make(chan struct{})
		eng.gate = e.gate
		e.release = func() { once.Do(func() { close(e.gate) }) }
	}
	engine, vocab := eng.engine()
	sched, err := batching.New(engine, vocab, batching.Config{
		Slots: o.slots, QueueSize: o.queue, StepTokens: stepTokens, CtxPerSlot: testCtx,
		Admission: o.admission, GPU: o.gpu, Observer: e.metrics, Clock: e.clock.Now,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	e.sched = sched
	t.Cleanup(func() {
		e.release()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := sched.Close(ctx); err != nil {
			t.Errorf("close scheduler: %v", err)
		}
	})
	ms := append([]*server.Model{{ID: testModel, Created: testNow, ContextLength: testCtx,
		Format: models.FormatLlama3, BOS: []int32{'^'}, Tokenizer: &fakeTokenizer{}, Generator: sched}}, o.extraModels...)
	e.srv, err = server.New(o.cfg, server.Deps{
		Logger: log, Clock: e.clock.Now, Models: ms, Metrics: e.metrics, Load: sched, GPU: o.gpu,
		Devices: o.devices,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.release()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return e
}

// serve runs the server on a loopback listener until the test ends (the
// env's cleanup shuts it down).
func (e *opsEnv) serve(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.srv.Serve(ln) }()
	return "http://" + ln.Addr().String()
}

// do sends one request through app.Test with the given headers
// ("Name: value" strings).
func (e *opsEnv) do(t *testing.T, method, path, body string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
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

func (e *opsEnv) chat(t *testing.T, headers ...string) (*http.Response, []byte) {
	t.Helper()
	return e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("hi", `"max_tokens":2`), headers...)
}

// metricsText scrapes /metrics.
func (e *opsEnv) metricsText(t *testing.T) string {
	t.Helper()
	resp, body := e.do(t, http.MethodGet, "/metrics", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	return string(body)
}

// wantError checks status, error code and Retry-After ("" for none).
func wantError(t *testing.T, resp *http.Response, body []byte, status int, code, retryAfter string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if got := deref(decodeErr(t, body).Error.Code); got != code {
		t.Errorf("code %s, want %s", got, code)
	}
	if got := resp.Header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
}
