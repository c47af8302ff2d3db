package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/models/registry"
)

var cacheDir string

func TestMain(m *testing.M) {
	// The SIGTERM test runs this test binary as the server.
	if os.Getenv("NEXTACT_TEST_RUN_MAIN") == "1" {
		main()
		return
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	dir, err := os.MkdirTemp("", "nextact-e2e")
	if err != nil {
		panic(err)
	}
	cacheDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		// Every stack the tests started was shut down: nothing of it runs.
		if err := goleak.Find(
			// fasthttp refreshes its Date header from a package-level
			// goroutine, and its worker pool's cleaner sleeps up to 10s
			// before it sees that Serve has returned.
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
			goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
			// net/http's client keeps idle connections of the tests.
			goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left after the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testConfig is serve's defaults scaled for tests on the embedded model.
func testConfig() serveConfig {
	return serveConfig{
		Addr: "127.0.0.1:0", CacheDir: cacheDir, OllamaModels: "none", GPUMemoryBudget: "auto", KeepAlive: keepAliveFlag(registry.DefaultKeepAlive), Slots: 8, Ctx: 1024, Threads: 1, Queue: 64,
		StepTokens: 128, GPULayers: -1, FlashAttention: "auto", Deterministic: true, BodyLimit: 1 << 20,
		RequestTimeout: 2 * time.Minute, DefaultMaxTokens: 64, ShutdownTimeout: 30 * time.Second, LogLevel: "warn",
		SessionTTL: time.Hour, MaxSessions: 1000, SessionStore: sessionStoreMemory, SessionLease: 30 * time.Second, ActionFormat: "prompted", ActionMaxTokens: 256, MaxPageBytes: 64 << 10, MaxRationaleBytes: 200, MaxTextBytes: 40,
	}
}

type testServer struct {
	URL   string
	stack *stack
	done  chan error
}

// startServer builds the real stack and serves it on a loopback port.
func startServer(t testing.TB, c serveConfig) *testServer {
	t.Helper()
	st, err := build(c, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{URL: "http://" + ln.Addr().String(), stack: st, done: make(chan error, 1)}
	go func() { ts.done <- st.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = st.shutdown(ctx)
	})
	return ts
}

func (ts *testServer) modelID() string { return ts.stack.model.ID }

// post sends a JSON body and decodes the JSON answer.
func post(t testing.TB, url string, body any) (int, http.Header, map[string]any) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	resp, err := http.Post(url, "application/json", r)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, readJSON(t, "POST "+url, resp)
}

// readJSON reads and closes a response's JSON object body.
func readJSON(t testing.TB, what string, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s: status %d, body not JSON: %q", what, resp.StatusCode, data)
	}
	return out
}

// chatText returns the message content and finish reason of a chat answer.
func chatText(t *testing.T, out map[string]any) (string, string) {
	t.Helper()
	choices, _ := out["choices"].([]any)
	if len(choices) != 1 {
		t.Fatalf("want one choice, got %v", out)
	}
	ch := choices[0].(map[string]any)
	msg := ch["message"].(map[string]any)
	return msg["content"].(string), fmt.Sprint(ch["finish_reason"])
}

// sseEvents reads a stream's data lines until [DONE] or EOF.
func sseEvents(t *testing.T, body io.Reader) (events []map[string]any, done bool) {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		data := strings.TrimPrefix(line, "data: ")
		if data == "[DONE]" {
			return events, true
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event not JSON: %q", data)
		}
		events = append(events, ev)
	}
	return events, false
}

// testModelPath is the embedded default model, generated once per binary.
func testModelPath(t testing.TB) string {
	t.Helper()
	p, err := models.EnsureDefault(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitIdle(t *testing.T, ts *testServer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if st := ts.stack.sched.Stats(); st.Running == 0 && st.Waiting == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("scheduler not idle: %+v", ts.stack.sched.Stats())
}

// serverProcess is this test binary run as `nextact serve` (TestMain runs
// main when NEXTACT_TEST_RUN_MAIN is set).
type serverProcess struct {
	base string
	cmd  *exec.Cmd
}

// startServerProcess starts it on a loopback port with args (after serve
// --addr and --log-level info) and waits for it to listen. Its error log
// lines go to the test's stderr; it is killed at cleanup.
func startServerProcess(t *testing.T, args ...string) *serverProcess {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, append([]string{"serve", "--addr", "127.0.0.1:0", "--log-level", "info"}, args...)...)
	// Sessions in memory unless args name a store: processes in parallel
	// would contend for the cache directory's file.
	cmd.Env = append(os.Environ(), "NEXTACT_TEST_RUN_MAIN=1", "NEXTACT_CACHE_DIR="+cacheDir, "NEXTACT_SESSION_STORE="+sessionStoreMemory)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue // llama.cpp's own lines
			}
			switch {
			case line["msg"] == "listening":
				addr <- line["addr"].(string)
			case line["level"] == "error":
				fmt.Fprintf(os.Stderr, "server process: %s\n", sc.Bytes())
			}
		}
	}()
	select {
	case a := <-addr:
		return &serverProcess{base: "http://" + a, cmd: cmd}
	case <-time.After(2 * time.Minute):
		t.Fatal("server did not start")
		return nil
	}
}
