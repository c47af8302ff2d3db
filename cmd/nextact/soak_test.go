package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// The soak (make soak SOAK=10m): a real nextact process on loopback gets a
// bounded, seeded mix of valid, invalid and abandoned requests from
// soakWorkers clients for the duration. Its resident memory, goroutines and
// open descriptors (its own /metrics) are read after a warm-up round of
// every kind and again once it is idle at the end; the soak fails when any
// answer is not the one its kind expects, or when they grew beyond:
//   - goroutines: soakMaxGoroutineGrowth;
//   - open descriptors: soakMaxFDGrowth;
//   - resident memory: the grammar cache's bound (it fills with page
//     grammars by design) plus soakRSSSlack.
//
// Then SIGTERM must end the process with status 0.
var soakFor = flag.Duration("soak", 0, "run TestSoak for this long (make soak SOAK=10m); 0 skips it")

const (
	soakWorkers            = 12
	soakMaxGoroutineGrowth = 20
	soakMaxFDGrowth        = 16
	soakRSSSlack           = 96 << 20
	soakGrammarCache       = 32 << 20
)

// soakSample is the server's state as its /metrics reports it.
type soakSample struct {
	// goHeld is the Go heap obtained from the OS and not released: RSS
	// minus it is the model, the KV cache and llama.cpp's own memory.
	// live is the heap live at the last collection (half the next GC's
	// goal, GOGC being 100); heap in use also counts garbage not yet
	// collected, and an idle process collects nothing.
	rss, goHeld, live, goroutines, fds float64
}

func (s soakSample) String() string {
	return fmt.Sprintf("RSS %.1f MiB (Go heap held %.1f MiB, live at the last GC %.1f MiB; the rest %.1f MiB), %g goroutines, %g open fds",
		s.rss/(1<<20), s.goHeld/(1<<20), s.live/(1<<20), (s.rss-s.goHeld)/(1<<20), s.goroutines, s.fds)
}

type soakServer struct{ *serverProcess }

// startSoakServer runs this test binary as `nextact serve`, sized like a
// small box.
func startSoakServer(t *testing.T) *soakServer {
	return &soakServer{startServerProcess(t, "--slots", "8", "--ctx", "2048", "--step-tokens", "256",
		"--threads", "1", "--queue", "64", "--body-limit", "1048576", "--max-page-bytes", "65536", "--header-timeout", "2s",
		"--request-timeout", "2m", "--gpu-sample-interval", "0", "--grammar-cache-bytes", fmt.Sprint(soakGrammarCache))}
}

// sample reads the process collector's gauges (cached a second there).
func (s *soakServer) sample(t *testing.T) soakSample {
	t.Helper()
	sm, err := s.trySample()
	if err != nil {
		t.Fatal(err)
	}
	return sm
}

// trySample is sample for goroutines other than the test's.
func (s *soakServer) trySample() (soakSample, error) {
	time.Sleep(1100 * time.Millisecond)
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		return soakSample{}, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return soakSample{}, err
	}
	return soakSample{
		rss:        sum(m, "process_resident_memory_bytes"),
		goHeld:     sum(m, "go_memstats_heap_sys_bytes") - sum(m, "go_memstats_heap_released_bytes"),
		live:       sum(m, "go_memstats_next_gc_bytes") / 2,
		goroutines: sum(m, "go_goroutines"),
		fds:        sum(m, "process_open_fds"),
	}, nil
}

// waitIdle waits until nothing runs or waits, and idle connections closed.
func (s *soakServer) waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		m := scrape(t, s.base)
		if sum(m, "vllm:num_requests_running")+sum(m, "vllm:num_requests_waiting") == 0 {
			// Closed connections' goroutines end, and fasthttp's idle
			// workers expire (idle 10 s, swept every 10 s).
			time.Sleep(22 * time.Second)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("server not idle")
}

// soakStats counts what the clients saw, by kind and status.
type soakStats struct {
	mu         sync.Mutex
	seen       map[string]map[int]int
	unexpected []string
}

func (st *soakStats) record(kind string, status int, ok bool, detail string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.seen[kind] == nil {
		st.seen[kind] = map[int]int{}
	}
	st.seen[kind][status]++
	if !ok && len(st.unexpected) < 20 {
		st.unexpected = append(st.unexpected, fmt.Sprintf("%s: %d %.300s", kind, status, detail))
	}
}

// soakClient sends one request of each kind.
type soakClient struct {
	base  string
	model string
	http  *http.Client
	rng   *rand.Rand
	stats *soakStats
}

// busy is what any request may get when the server is loaded.
func busy(status int) bool { return status == 503 || status == 429 }

func (c *soakClient) post(kind, path, body string, header map[string]string, want ...int) {
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.stats.record(kind, -1, slices.Contains(want, -1), err.Error())
		return
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ok := slices.Contains(want, resp.StatusCode) || busy(resp.StatusCode)
	if ok && resp.StatusCode != 200 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		ok = json.Unmarshal(data, &e) == nil && e.Error.Message != ""
	}
	c.stats.record(kind, resp.StatusCode, ok, string(data))
}

func (c *soakClient) chat(content string, extra map[string]any) string {
	b, _ := json.Marshal(chatReq(c.model, content, extra))
	return string(b)
}

func (c *soakClient) page(small bool) string {
	o := nextactiontest.PageOptions{MaxClickables: 12, MaxInputs: 3, ApproxBytes: -1}
	if small { // a session's history must leave room for a few steps
		o.MaxClickables, o.MaxInputs = 4, 1
	}
	html, _, _, _ := nextactiontest.RandomPage(c.rng, o)
	return html
}

// raw sends bytes on a fresh connection and reads the answer, if any.
func (c *soakClient) raw(kind string, req string, wantPrefix string) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(c.base, "http://"))
	if err != nil {
		c.stats.record(kind, -1, false, err.Error())
		return
	}
	defer conn.Close()
	_, _ = conn.Write([]byte(req))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, _ := io.ReadAtLeast(conn, buf, len(wantPrefix))
	got := string(buf[:n])
	c.stats.record(kind, 0, strings.HasPrefix(got, wantPrefix), got)
}

// one sends a request of a kind drawn by weight.
func (c *soakClient) one() {
	id := c.model
	switch k := c.rng.IntN(100); {
	case k < 18:
		c.post("chat", "/v1/chat/completions", c.chat(fmt.Sprintf("question %d", c.rng.IntN(1000)), map[string]any{"max_tokens": 32, "temperature": 0.7, "seed": c.rng.IntN(1 << 20)}), nil, 200)
	case k < 26:
		c.stream(false)
	case k < 30:
		c.post("completion", "/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":"once upon a time %d","max_tokens":24,"stop":["\n\n"]}`, id, c.rng.IntN(99)), nil, 200)
	case k < 44:
		body, _ := json.Marshal(map[string]any{"model": id, "page": c.page(false), "max_tokens": 96, "format": []string{"prompted", "finetuned"}[c.rng.IntN(2)]})
		c.post("action", "/v1/actions/next", string(body), nil, 200)
	case k < 52:
		c.session()
	case k < 57:
		schema := []string{
			`{"type":"object","properties":{"q":{"type":"integer"},"tags":{"type":"array","maxItems":3,"items":{"type":"string","maxLength":8}}}}`,
			`{"enum":["buy","wait","leave"]}`,
		}[c.rng.IntN(2)]
		c.post("structured", "/v1/chat/completions", c.chat("decide", map[string]any{"max_tokens": 48, "response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"schema": json.RawMessage(schema)}}}), nil, 200)
	case k < 78:
		c.invalid()
	default:
		c.abandon()
	}
}

// session opens a session, steps it two or three times, reads and ends it.
func (c *soakClient) session() {
	resp, err := c.http.Post(c.base+"/v1/sessions", "application/json", strings.NewReader(fmt.Sprintf(`{"model":%q,"persona":"thrifty"}`, c.model)))
	if err != nil {
		c.stats.record("session", -1, false, err.Error())
		return
	}
	var s struct {
		ID string `json:"id"`
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || json.Unmarshal(data, &s) != nil {
		c.stats.record("session", resp.StatusCode, busy(resp.StatusCode), string(data))
		return
	}
	for range 2 + c.rng.IntN(2) {
		body, _ := json.Marshal(map[string]any{"page": c.page(true), "max_tokens": 96})
		// A long history may not fit the context: a 400 says so.
		c.post("session step", "/v1/sessions/"+s.ID+"/steps", string(body), nil, 200, 400)
	}
	req, _ := http.NewRequest(http.MethodDelete, c.base+"/v1/sessions/"+s.ID, nil)
	if resp, err := c.http.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.stats.record("session", resp.StatusCode, resp.StatusCode == 200, "")
	}
}

// stream reads an SSE stream to [DONE], or closes it after the first event
// when abandon is set.
func (c *soakClient) stream(abandon bool) {
	kind := "stream"
	if abandon {
		kind = "abandoned stream"
	}
	resp, err := c.http.Post(c.base+"/v1/chat/completions", "application/json",
		strings.NewReader(c.chat("tell me more", map[string]any{"max_tokens": 64, "stream": true, "temperature": 1})))
	if err != nil {
		c.stats.record(kind, -1, false, err.Error())
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		data, _ := io.ReadAll(resp.Body)
		c.stats.record(kind, resp.StatusCode, busy(resp.StatusCode), string(data))
		return
	}
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			c.stats.record(kind, 200, abandon, "stream cut: "+err.Error())
			return
		}
		if abandon && strings.HasPrefix(line, "data: ") {
			c.stats.record(kind, 200, true, "")
			return // the deferred Close abandons it
		}
		if strings.HasPrefix(line, "data: [DONE]") {
			c.stats.record(kind, 200, true, "")
			return
		}
	}
}

// invalid sends a request that must be refused, with its status.
func (c *soakClient) invalid() {
	id := c.model
	switch c.rng.IntN(12) {
	case 0:
		c.post("invalid json", "/v1/chat/completions", `{"model":`, nil, 400)
	case 1:
		c.post("invalid param", "/v1/chat/completions", c.chat("x", map[string]any{"temperature": 9}), nil, 400)
	case 2:
		c.post("unknown model", "/v1/completions", `{"model":"nope","prompt":"x"}`, nil, 404)
	case 3:
		c.post("max_tokens overflow", "/v1/completions", fmt.Sprintf(`{"model":%q,"prompt":"x","max_tokens":9223372036854775807}`, id), nil, 400)
	case 4:
		c.post("schema bomb", "/v1/chat/completions", c.chat("x", map[string]any{"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{
			"schema": json.RawMessage(`{"type":"array","maxItems":4096,"items":{"type":"array","maxItems":4096,"items":{"type":"integer"}}}`)}}}), nil, 400)
	case 5:
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(c.chat("x", nil)[:10]))
		w.Write(bytes.Repeat([]byte(" "), 8<<20))
		w.Close()
		req, _ := http.NewRequest(http.MethodPost, c.base+"/v1/chat/completions", &b)
		req.Header.Set("Content-Encoding", "gzip")
		if resp, err := c.http.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			c.stats.record("gzip bomb", resp.StatusCode, resp.StatusCode == 413, "")
		}
	case 6:
		// The server answers 413 from the announced length and closes
		// without reading the body: the client may see its write fail.
		c.post("body over limit", "/v1/chat/completions", c.chat(strings.Repeat("x", 2<<20), nil), nil, 413, -1)
	case 7:
		msgs := make([]map[string]string, 5000)
		for i := range msgs {
			msgs[i] = map[string]string{"role": "user", "content": ""}
		}
		b, _ := json.Marshal(map[string]any{"model": id, "messages": msgs})
		c.post("too many messages", "/v1/chat/completions", string(b), nil, 400)
	case 8:
		c.raw("unknown method", "FOO /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 501")
	case 9:
		c.raw("header without colon", "GET /health HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", "HTTP/1.1 408")
	case 10:
		c.raw("expect over limit", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n", "HTTP/1.1 413")
	default:
		c.post("page over limit", "/v1/actions/next", fmt.Sprintf(`{"model":%q,"page":%q}`, id, strings.Repeat("p", 70_000)), nil, 413)
	}
}

// abandon leaves in the ways clients do.
func (c *soakClient) abandon() {
	switch c.rng.IntN(3) {
	case 0:
		c.stream(true)
	case 1: // a non-streaming request whose client closes at once
		conn, err := net.Dial("tcp", strings.TrimPrefix(c.base, "http://"))
		if err != nil {
			c.stats.record("abandoned request", -1, false, err.Error())
			return
		}
		body := c.chat("a long answer please", map[string]any{"max_tokens": 1500, "temperature": 1})
		fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		conn.Close()
		c.stats.record("abandoned request", 0, true, "")
	default: // a connection that never sends anything
		conn, err := net.Dial("tcp", strings.TrimPrefix(c.base, "http://"))
		if err == nil {
			time.Sleep(time.Duration(c.rng.IntN(200)) * time.Millisecond)
			conn.Close()
		}
		c.stats.record("idle connection", 0, err == nil, fmt.Sprint(err))
	}
}

func TestSoak(t *testing.T) {
	if *soakFor == 0 {
		t.Skip("make soak SOAK=10m runs it")
	}
	srv := startSoakServer(t)
	stats := &soakStats{seen: map[string]map[int]int{}}
	client := func(seed uint64) *soakClient {
		return &soakClient{base: srv.base, model: "nextact-tiny", rng: rand.New(rand.NewPCG(seed, 77)), stats: stats,
			http: &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: soakWorkers}}}
	}
	// Warm-up: every kind a few times, so caches and pools exist.
	warm := client(0)
	for range 60 {
		warm.one()
	}
	warm.http.CloseIdleConnections()
	srv.waitIdle(t)
	start := srv.sample(t)
	t.Logf("start: %s", start)
	began := time.Now()
	deadline := began.Add(*soakFor)
	var wg sync.WaitGroup
	var sent sync.Map
	wg.Go(func() { // the trajectory, under load, once a minute
		for time.Until(deadline) > time.Minute {
			time.Sleep(time.Minute)
			if sm, err := srv.trySample(); err == nil {
				t.Logf("after %s, under load: %s", time.Since(began).Round(time.Second), sm)
			}
		}
	})
	for w := range soakWorkers {
		wg.Go(func() {
			c := client(uint64(w) + 1)
			n := 0
			for time.Now().Before(deadline) {
				c.one()
				n++
			}
			c.http.CloseIdleConnections()
			sent.Store(w, n)
		})
	}
	wg.Wait()
	total := 0
	sent.Range(func(_, v any) bool { total += v.(int); return true })
	srv.waitIdle(t)
	end := srv.sample(t)
	t.Logf("end after %s and %d requests: %s", time.Since(began).Round(time.Second), total, end)
	printSoak(t, stats)
	for _, u := range stats.unexpected {
		t.Errorf("unexpected answer: %s", u)
	}
	if g := end.goroutines - start.goroutines; g > soakMaxGoroutineGrowth {
		t.Errorf("goroutines grew by %g (bound %d)", g, soakMaxGoroutineGrowth)
	}
	if f := end.fds - start.fds; f > soakMaxFDGrowth {
		t.Errorf("open descriptors grew by %g (bound %d)", f, soakMaxFDGrowth)
	}
	if r := end.rss - start.rss; r > soakGrammarCache+soakRSSSlack {
		t.Errorf("resident memory grew by %.1f MiB (bound %d MiB)", r/(1<<20), (soakGrammarCache+soakRSSSlack)>>20)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Error("no exit within 90s of SIGTERM")
	}
}

func printSoak(t *testing.T, st *soakStats) {
	st.mu.Lock()
	defer st.mu.Unlock()
	kinds := make([]string, 0, len(st.seen))
	for k := range st.seen {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		var parts []string
		for status, n := range st.seen[k] {
			parts = append(parts, fmt.Sprintf("%d: %d", status, n))
		}
		sort.Strings(parts)
		t.Logf("%-22s %s", k, strings.Join(parts, ", "))
	}
}
