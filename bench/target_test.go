package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nextact/nextact/bench"
	"github.com/nextact/nextact/nextaction"
)

// fakeServer is an httptest server that lists one model and logs every
// other request.
type fakeServer struct {
	*httptest.Server
	mu     sync.Mutex
	paths  []string
	bodies []map[string]any
}

func newFake(t *testing.T, h func(w http.ResponseWriter, r *http.Request, body map[string]any)) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			fmt.Fprint(w, `{"object":"list","data":[{"id":"fake-model","object":"model"}]}`)
			return
		}
		var body map[string]any
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &body)
		f.mu.Lock()
		f.paths = append(f.paths, r.Method+" "+r.URL.Path)
		f.bodies = append(f.bodies, body)
		f.mu.Unlock()
		h(w, r, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range f.paths {
		if strings.HasPrefix(p, prefix) {
			n++
		}
	}
	return n
}

// answer writes a next-action answer: a click on the first product link
// of the request's page, with fixed usage and timing.
func answer(w http.ResponseWriter, body map[string]any) {
	page, _ := body["page"].(string)
	res := nextaction.NextActionResponse{
		Action: *firstProduct(page), Rationale: "I like it.",
		Usage:  nextaction.Usage{PromptTokens: 1000, CompletionTokens: 11, TotalTokens: 1011, PromptTokensDetails: &nextaction.PromptTokensDetails{CachedTokens: 600}},
		Timing: nextaction.Timing{TotalMs: 120, FirstTokenMs: 20},
	}
	_ = json.NewEncoder(w).Encode(res)
}

func benchConfig(url string, mode bench.Mode, sessions, steps int) bench.Config {
	return bench.Config{
		Target: bench.Target{URL: url, Mode: mode}, Sessions: sessions, Steps: steps, PageTokens: 300, MaxTokens: 32,
		Seed: 1, Personas: true, Arrival: bench.Arrival{Kind: bench.ArrivalBurst}, Duration: 30 * time.Second, Rounds: 1,
	}
}

func quiet() bench.Deps { return bench.Deps{ProgressEvery: -1} }

func TestActionsMode(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) { answer(w, body) })
	rep, err := bench.Bench(context.Background(), benchConfig(f.URL, bench.ModeActions, 3, 3), quiet())
	if err != nil {
		t.Fatal(err)
	}
	rr := rep.Runs[0]
	if rr.Model != "fake-model" || rr.Steps.Issued != 9 || rr.Steps.Success != 9 || f.count("POST /v1/actions/next") != 9 {
		t.Fatalf("model %q, steps %+v, %d requests", rr.Model, rr.Steps, f.count("POST /v1/actions/next"))
	}
	// TTFT is the server's first_token_ms; ITL (120-20)/(11-1) = 10 ms.
	if d := rr.LatencyMs.TTFT; d == nil || d.P50 != 20 || rr.TTFTSource != bench.SourceServerTiming {
		t.Errorf("ttft = %+v (%s)", d, rr.TTFTSource)
	}
	if d := rr.LatencyMs.ITL; d == nil || d.P50 != 10 {
		t.Errorf("itl = %+v", d)
	}
	if rr.Tokens.Cached == nil || *rr.Tokens.Cached != 5400 || *rr.Tokens.Prefill != 3600 || rr.Tokens.Prompt != 9000 {
		t.Errorf("tokens = %+v", rr.Tokens)
	}
	for _, b := range f.bodies {
		h, _ := b["history"].([]any)
		if b["model"] != "fake-model" || b["max_tokens"] != 32.0 || b["temperature"] != 0.0 || b["persona"] == "" || b["seed"] == nil {
			t.Fatalf("request body %v", b)
		}
		if len(h) > 2 {
			t.Fatalf("history of %d steps in a 3-step session", len(h))
		}
	}
}

// A server without the sessions API: every session's first request is a
// 404, reported as one failed step per session, and nothing else is sent.
func TestSessionsModeWithoutSessionsAPI(t *testing.T) {
	t.Parallel()
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"message":"Unknown path.","type":"invalid_request_error","param":null,"code":null}}`)
	})
	rep, err := bench.Bench(context.Background(), benchConfig(f.URL, bench.ModeSessions, 4, 3), quiet())
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Runs[0].Steps
	if c.Issued != 4 || c.Failed != 4 || c.Reasons["http_404"] != 4 || rep.Succeeded() {
		t.Fatalf("steps = %+v", c)
	}
	if !strings.Contains(c.Examples["http_404"], "Unknown path") {
		t.Errorf("example = %q", c.Examples["http_404"])
	}
	if rep.Runs[0].Sessions.Aborted != 4 || f.count("POST /v1/sessions") != 4 || len(f.paths) != 4 {
		t.Errorf("sessions %+v; requests %v", rep.Runs[0].Sessions, f.paths)
	}
}

func TestSessionsMode(t *testing.T) {
	t.Parallel()
	var ids atomic.Int64
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/sessions":
			fmt.Fprintf(w, `{"id":"s%d"}`, ids.Add(1))
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/steps"):
			answer(w, body)
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	})
	rep, err := bench.Bench(context.Background(), benchConfig(f.URL, bench.ModeSessions, 3, 2), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Runs[0].Steps; c.Success != 6 || c.Issued != 6 {
		t.Fatalf("steps = %+v", c)
	}
	if f.count("POST /v1/sessions/s") != 6 || f.count("DELETE /v1/sessions/s") != 3 {
		t.Errorf("requests: %v", f.paths)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, b := range f.bodies {
		if strings.HasSuffix(f.paths[i], "/steps") && (b["page"] == "" || b["history"] != nil) {
			t.Errorf("step body %v: want the page and no history", b)
		}
		if f.paths[i] == "POST /v1/sessions" && (b["model"] != "fake-model" || b["persona"] == nil) {
			t.Errorf("create body %v", b)
		}
	}
}

func TestRejectedAndFailed(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
		switch n.Add(1) % 4 {
		case 0:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"message":"slow down","type":"rate_limit","param":null,"code":null}}`)
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.WriteHeader(http.StatusInternalServerError)
		default:
			fmt.Fprint(w, `{"action":`) // truncated body
		}
	})
	rep, err := bench.Bench(context.Background(), benchConfig(f.URL, bench.ModeActions, 8, 2), quiet())
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Runs[0].Steps
	if c.Issued != 8 || c.Rejected != 4 || c.Failed != 4 || c.Reasons["http_429"] != 2 || c.Reasons["http_503"] != 2 ||
		c.Reasons["http_500"] != 2 || c.Reasons["decode"] != 2 {
		t.Fatalf("steps = %+v", c)
	}
}

// The benchmark follows no redirect: its requests go only to the URL given.
func TestNoRedirects(t *testing.T) {
	t.Parallel()
	other := newFake(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) { answer(w, body) })
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	})
	rep, err := bench.Bench(context.Background(), benchConfig(f.URL, bench.ModeActions, 2, 2), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Runs[0].Steps; c.Failed != 2 || c.Reasons["http_307"] != 2 || len(other.paths) != 0 {
		t.Fatalf("steps %+v; the redirect target got %v", c, other.paths)
	}
}

// tickClock advances by tick at every call.
func tickClock(tick time.Duration) func() time.Time {
	var n atomic.Int64
	base := time.Unix(1_700_000_000, 0)
	return func() time.Time { return base.Add(time.Duration(n.Add(1)) * tick) }
}

func sse(w http.ResponseWriter, events ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for _, e := range events {
		fmt.Fprint(w, e)
		fl.Flush()
	}
}

func chunk(content string) string {
	b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]string{"content": content}}}})
	return "data: " + string(b) + "\n\n"
}

func TestOpenAIMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		events func(page string) []string
		check  func(t *testing.T, rr bench.RunReport)
	}{
		{"parsed answer", func(page string) []string {
			a := firstProduct(page)
			out := nextaction.PromptedOutput("I want to see it.", *a)
			return []string{": keep-alive\n\n", chunk(out[:10]), chunk(out[10:20]), chunk(out[20:]),
				`data: {"choices":[],"usage":{"prompt_tokens":900,"completion_tokens":5,"total_tokens":905,"prompt_tokens_details":{"cached_tokens":100}}}` + "\n\n",
				"data: [DONE]\n\n"}
		}, func(t *testing.T, rr bench.RunReport) {
			// One tick from sending to the first content; two ticks over
			// four token gaps between first and last content.
			if c := rr.Steps; c.Success != 1 || c.Unparsed != 0 || c.Actions["click"] != 1 {
				t.Errorf("steps = %+v", c)
			}
			if d := rr.LatencyMs.TTFT; d == nil || d.P50 != 10 || rr.TTFTSource != bench.SourceClientStream {
				t.Errorf("ttft = %+v", d)
			}
			if d := rr.LatencyMs.ITL; d == nil || d.P50 != 5 {
				t.Errorf("itl = %+v", d)
			}
			if rr.Tokens.Prompt != 900 || rr.Tokens.Cached == nil || *rr.Tokens.Cached != 100 {
				t.Errorf("tokens = %+v", rr.Tokens)
			}
		}},
		{"unparsed answer", func(string) []string {
			return []string{chunk("I would click something."), "data: [DONE]\n\n"}
		}, func(t *testing.T, rr bench.RunReport) {
			if c := rr.Steps; c.Success != 1 || c.Unparsed != 1 || rr.Tokens.StepsWithUsage != 0 || rr.Tokens.Cached != nil {
				t.Errorf("steps = %+v, tokens %+v", c, rr.Tokens)
			}
		}},
		{"error event", func(string) []string {
			return []string{chunk("{"), `data: {"error":{"message":"boom","type":"server_error"}}` + "\n\n", "data: [DONE]\n\n"}
		}, func(t *testing.T, rr bench.RunReport) {
			if c := rr.Steps; c.Failed != 1 || c.Reasons["stream_error"] != 1 || !strings.Contains(c.Examples["stream_error"], "boom") {
				t.Errorf("steps = %+v", c)
			}
		}},
		{"truncated stream", func(string) []string { return []string{chunk("{")} }, func(t *testing.T, rr bench.RunReport) {
			if c := rr.Steps; c.Failed != 1 || c.Reasons["stream_truncated"] != 1 {
				t.Errorf("steps = %+v", c)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
				msgs, _ := body["messages"].([]any)
				last, _ := msgs[len(msgs)-1].(map[string]any)
				if body["stream"] != true || r.URL.Path != "/v1/chat/completions" || last["role"] != "user" {
					http.Error(w, "bad request", http.StatusBadRequest)
					return
				}
				sse(w, tc.events(last["content"].(string))...)
			})
			deps := quiet()
			deps.Now = tickClock(10 * time.Millisecond)
			rep, err := bench.Bench(context.Background(), benchConfig(f.URL, bench.ModeOpenAI, 1, 1), deps)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, rep.Runs[0])
		})
	}
}

// --compare runs the same workload against both targets, alternately, and
// the ratio table compares them.
func TestCompareAlternates(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	mk := func(name string, delay time.Duration) *fakeServer {
		return newFake(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
			mu.Lock()
			if len(order) == 0 || order[len(order)-1] != name {
				order = append(order, name)
			}
			mu.Unlock()
			time.Sleep(delay)
			answer(w, body)
		})
	}
	a, b := mk("a", 0), mk("b", 20*time.Millisecond)
	cfg := benchConfig(a.URL, bench.ModeActions, 2, 2)
	cfg.Compare = bench.Target{URL: b.URL, Mode: bench.ModeActions}
	cfg.Rounds = 2
	var out bytes.Buffer
	deps := quiet()
	deps.Out = &out
	rep, err := bench.Bench(context.Background(), cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ","); got != "a,b,a,b" {
		t.Errorf("order of targets = %s, want a,b,a,b", got)
	}
	if len(rep.Runs) != 2 || rep.Runs[0].Rounds != 2 || rep.Runs[1].Steps.Issued != 8 || rep.Comparison == nil {
		t.Fatalf("runs %+v, comparison %v", rep.Runs, rep.Comparison)
	}
	// Same workload: the same first pages were sent to both.
	if pa, pb := firstPages(a), firstPages(b); len(pa) != 4 || !slices.Equal(pa, pb) {
		t.Errorf("the two targets got different first pages: %d and %d", len(pa), len(pb))
	}
	var e2e *bench.ComparisonRow
	for i, r := range rep.Comparison.Rows {
		if r.Metric == "e2e_p50_ms" {
			e2e = &rep.Comparison.Rows[i]
		}
	}
	if e2e == nil || e2e.Ratio == nil || *e2e.Ratio <= 1 {
		t.Errorf("e2e_p50 row = %+v, want b slower than a", e2e)
	}
	if !strings.Contains(out.String(), "comparison (b / a)") || !strings.Contains(out.String(), "e2e_p50_ms") {
		t.Errorf("no ratio table in the output:\n%s", out.String())
	}
}

// firstPages are the pages of the first steps a server got, sorted.
func firstPages(f *fakeServer) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, b := range f.bodies {
		if b["history"] == nil {
			out = append(out, b["page"].(string))
		}
	}
	slices.Sort(out)
	return out
}

// The whole benchmark ends within --duration even when the target hangs.
func TestBenchStopsWithinDuration(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := newFake(t, func(w http.ResponseWriter, r *http.Request, _ map[string]any) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	cfg := benchConfig(f.URL, bench.ModeActions, 3, 5)
	cfg.Duration = 1500 * time.Millisecond
	start := time.Now()
	rep, err := bench.Bench(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > cfg.Duration {
		t.Fatalf("took %s, over --duration %s", el, cfg.Duration)
	}
	rr := rep.Runs[0]
	if !rr.StoppedByDeadline || rr.Steps.Issued != 3 || rr.Steps.Reasons["cancelled"] != 3 || rr.Sessions.Cancelled != 3 {
		t.Errorf("run = %+v %+v", rr.Steps, rr.Sessions)
	}
}
