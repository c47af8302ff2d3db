package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/models/catalog"
	"github.com/nextact/nextact/models/ollama/ollamatest"
)

// Many models in one server, on the real engine with small generated
// models: each model has its own engine and scheduler in the registry.

// genSmallModel writes a small seeded model (two 64-wide layers) once per
// test binary and returns its path.
func genSmallModel(t testing.TB, seed int64) string {
	t.Helper()
	path := filepath.Join(cacheDir, fmt.Sprintf("small-%d.gguf", seed))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	s := models.DefaultSpec()
	s.Seed, s.Name = seed, fmt.Sprintf("small-%d", seed)
	s.EmbeddingLength, s.BlockCount, s.HeadCount, s.HeadCountKV, s.FeedForwardLength = 64, 2, 2, 1, 128
	if err := models.Generate(path, s); err != nil {
		t.Fatal(err)
	}
	return path
}

// modelsConfig is a test config for small models: few slots, short context.
func modelsConfig() serveConfig {
	c := testConfig()
	c.Slots, c.Ctx, c.StepTokens, c.Queue = 2, 256, 64, 8
	c.GPUMemoryBudget = "0"
	return c
}

// writeManifest writes a --models manifest of the given entries.
func writeManifest(t *testing.T, entries ...map[string]any) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"models": entries})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "models.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// greedy is a model's greedy chat answer: its text and prompt tokens.
type greedy struct {
	Text         string
	PromptTokens float64
}

func askGreedy(t *testing.T, ts *testServer, model string) greedy {
	t.Helper()
	code, _, out := post(t, ts.URL+"/v1/chat/completions", map[string]any{
		"model": model, "temperature": 0, "max_tokens": 12,
		"messages": []map[string]string{{"role": "user", "content": "The shopper opens the cart and"}},
	})
	if code != http.StatusOK {
		t.Fatalf("%s: status %d: %v", model, code, out)
	}
	text, _ := chatText(t, out)
	return greedy{Text: text, PromptTokens: out["usage"].(map[string]any)["prompt_tokens"].(float64)}
}

// getJSON fetches a JSON document.
func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, readJSON(t, "GET "+url, resp)
}

// startTwoModels serves models a and b (two seeds), loaded at start and
// kept loaded.
func startTwoModels(t *testing.T, c serveConfig) *testServer {
	t.Helper()
	c.ModelsFile = writeManifest(t,
		map[string]any{"id": "a", "path": genSmallModel(t, 21), "keep_alive": -1, "preload": true},
		map[string]any{"id": "b", "path": genSmallModel(t, 22), "keep_alive": -1, "preload": true},
	)
	return startServer(t, c)
}

// loadedModels is /v1/models' loaded flag by model id.
func loadedModels(t *testing.T, ts *testServer) map[string]bool {
	t.Helper()
	_, out := getJSON(t, ts.URL+"/v1/models")
	got := map[string]bool{}
	for _, m := range out["data"].([]any) {
		m := m.(map[string]any)
		got[m["id"].(string)] = m["loaded"].(bool)
	}
	return got
}

// waitLoaded waits until /v1/models says model is loaded (or not).
func waitLoaded(t *testing.T, ts *testServer, model string, want bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if loadedModels(t, ts)[model] == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("model %s loaded=%v never came: %v", model, want, loadedModels(t, ts))
}

// Two models with different chat formats (Llama 3 and ChatML) are served
// at once, each with its own engine and scheduler, and each answers
// greedily exactly as it does when served alone; /v1/models lists both
// with their context and load state, GET /v1/models/{id} answers one, and
// /metrics has one series per vllm: gauge and per-model series of the
// rest.
func TestTwoModelsServedAtOnce(t *testing.T) {
	pathA, pathB := genSmallModel(t, 21), genSmallModel(t, 22)
	alone := func(arg, format string) greedy {
		c := modelsConfig()
		c.Models, c.ChatFormat = pathList{arg}, format
		ts := startServer(t, c)
		return askGreedy(t, ts, strings.SplitN(arg, "=", 2)[0])
	}
	wantA, wantB := alone("a="+pathA, ""), alone("b="+pathB, "chatml")

	c := modelsConfig()
	c.ModelsFile = writeManifest(t,
		map[string]any{"id": "a", "path": pathA, "keep_alive": -1},
		map[string]any{"id": "b", "path": pathB, "chat_format": "chatml", "keep_alive": -1, "ctx": 128},
	)
	ts := startServer(t, c)
	if got := loadedModels(t, ts); len(got) != 2 || got["a"] || got["b"] {
		t.Fatalf("before any request: %v, want a and b listed, neither loaded", got)
	}
	var wg sync.WaitGroup
	var gotA, gotB greedy
	wg.Add(2)
	go func() { defer wg.Done(); gotA = askGreedy(t, ts, "a") }()
	go func() { defer wg.Done(); gotB = askGreedy(t, ts, "b") }()
	wg.Wait()
	if gotA != wantA || gotB != wantB {
		t.Errorf("served together: a %+v, b %+v; alone: a %+v, b %+v", gotA, gotB, wantA, wantB)
	}
	if gotA.Text == gotB.Text {
		t.Errorf("two models answered alike: %q", gotA.Text)
	}
	if got := loadedModels(t, ts); !got["a"] || !got["b"] {
		t.Errorf("after requests: %v, want both loaded", got)
	}
	code, one := getJSON(t, ts.URL+"/v1/models/b")
	if code != http.StatusOK || one["id"] != "b" || one["context_length"] != float64(128) || one["owned_by"] != "nextact" {
		t.Errorf("GET /v1/models/b: %d %v", code, one)
	}
	code, missing := getJSON(t, ts.URL+"/v1/models/nope")
	if errObj, _ := missing["error"].(map[string]any); code != http.StatusNotFound || errObj["code"] != "model_not_found" {
		t.Errorf("GET /v1/models/nope: %d %v", code, missing)
	}
	text := metricsText(t, ts.URL)
	for _, name := range []string{"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"} {
		if n := strings.Count(text, "\n"+name+" "); n != 1 {
			t.Errorf("%s: %d series, want exactly 1", name, n)
		}
	}
	for _, want := range []string{`nextact_slots{model="a"} 2`, `nextact_slots{model="b"} 2`,
		`nextact_kv_capacity_tokens{model="b"} 256`, `nextact_requests_finished_total{model="a",`,
		`nextact_queue_time_seconds_count{model="b"} 1`} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// metricsText is the /metrics exposition.
func metricsText(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return "\n" + string(data)
}

// Under a host memory budget that holds two of three models, a request for
// the third unloads the least recently used idle one; a model that can
// never fit is a 503 insufficient_memory without Retry-After, and the
// server goes on serving the others.
func TestModelBudgetUnloadsIdleModel(t *testing.T) {
	paths := []string{genSmallModel(t, 21), genSmallModel(t, 22), genSmallModel(t, 23)}
	c := modelsConfig()
	var entries []map[string]any
	for i, p := range paths {
		entries = append(entries, map[string]any{"id": fmt.Sprintf("m%d", i), "path": p, "keep_alive": -1})
	}
	// big is m0's file with 8 times its KV: it never fits.
	entries = append(entries, map[string]any{"id": "big", "path": paths[0], "slots": 16, "ctx": 2048, "keep_alive": -1})
	c.ModelsFile = writeManifest(t, entries...)
	specs, err := catalog.Build(catalog.Sources{ModelsFile: c.ModelsFile}, catalog.Defaults{Slots: c.Slots, Ctx: c.Ctx, StepTokens: c.StepTokens})
	if err != nil {
		t.Fatal(err)
	}
	one := specs.Specs[0].Memory.Host
	c.HostMemoryBudget = byteSize(2*one + one/2) // two fit, not three
	if specs.Specs[3].Memory.Host <= int64(c.HostMemoryBudget) {
		t.Fatalf("big (%d bytes) fits the budget %d", specs.Specs[3].Memory.Host, c.HostMemoryBudget)
	}
	ts := startServer(t, c)
	first := askGreedy(t, ts, "m0")
	askGreedy(t, ts, "m1")
	askGreedy(t, ts, "m2") // m0 and m1 idle: m0, the least recently used, goes
	if got := loadedModels(t, ts); got["m0"] || !got["m1"] || !got["m2"] {
		t.Errorf("after m0, m1, m2 under a budget of two: %v, want m1 and m2 loaded", got)
	}
	if again := askGreedy(t, ts, "m0"); again != first {
		t.Errorf("m0 after its reload: %+v, before %+v", again, first)
	}
	code, hdr, out := post(t, ts.URL+"/v1/chat/completions", map[string]any{
		"model": "big", "max_tokens": 4, "messages": []map[string]string{{"role": "user", "content": "hi"}},
	})
	errObj, _ := out["error"].(map[string]any)
	if code != http.StatusServiceUnavailable || errObj["code"] != "insufficient_memory" || hdr.Get("Retry-After") != "" {
		t.Errorf("a model over the whole budget: %d Retry-After %q %v", code, hdr.Get("Retry-After"), out)
	}
	if msg, _ := errObj["message"].(string); !strings.Contains(msg, "budget") {
		t.Errorf("message %q does not name the budget", msg)
	}
	askGreedy(t, ts, "m1") // still serving
}

// A model with keep_alive 0 unloads as soon as its request ends, loads
// again on the next one, and answers the same.
func TestKeepAliveUnloadReload(t *testing.T) {
	c := modelsConfig()
	c.ModelsFile = writeManifest(t, map[string]any{"id": "k", "path": genSmallModel(t, 24), "keep_alive": 0, "preload": true})
	ts := startServer(t, c)
	waitLoaded(t, ts, "k", false) // preloaded, then idle with keep_alive 0
	first := askGreedy(t, ts, "k")
	waitLoaded(t, ts, "k", false)
	if again := askGreedy(t, ts, "k"); again != first {
		t.Errorf("after keep_alive unload and reload: %+v, before %+v", again, first)
	}
	waitLoaded(t, ts, "k", false)
}

// Each model has its own scheduler and queue: a burst on A that fills
// A's queue (some of it rejected with queue_full) never rejects B's
// requests, which B's own slots serve meanwhile.
func TestBurstOnOneModelSparesAnother(t *testing.T) {
	c := modelsConfig()
	c.Slots, c.Queue = 1, 2
	ts := startTwoModels(t, c)
	a := ts.stack.models.loaded("a")
	if a == nil || ts.stack.models.loaded("b") == nil {
		t.Fatal("preloaded models not loaded")
	}
	const burst = 8
	codes := make(chan int, burst)
	var wg sync.WaitGroup
	for range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, _ := post(t, ts.URL+"/v1/chat/completions", map[string]any{
				"model": "a", "max_tokens": 200, "temperature": 0,
				"messages": []map[string]string{{"role": "user", "content": "a long answer"}},
			})
			codes <- code
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for a.sched.Stats().Waiting < c.Queue && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := a.sched.Stats(); st.Waiting < c.Queue {
		t.Fatalf("A's queue never filled: %+v", st)
	}
	for i := range 3 {
		code, _, out := post(t, ts.URL+"/v1/chat/completions", map[string]any{
			"model": "b", "max_tokens": 4,
			"messages": []map[string]string{{"role": "user", "content": fmt.Sprintf("b %d", i)}},
		})
		if code != http.StatusOK {
			t.Errorf("B's request %d during A's burst: %d %v", i, code, out)
		}
	}
	wg.Wait()
	close(codes)
	rejected := 0
	for code := range codes {
		if code == http.StatusServiceUnavailable {
			rejected++
		} else if code != http.StatusOK {
			t.Errorf("A's burst: status %d", code)
		}
	}
	if rejected == 0 {
		t.Errorf("no request of A's burst of %d was rejected with 1 slot and a queue of %d", burst, c.Queue)
	}
}

// Models of an Ollama store laid out on disk (manifests, sha256-named
// blobs) are served by their Ollama names, with and without the tag.
func TestOllamaStoreThroughServer(t *testing.T) {
	store := t.TempDir()
	if _, err := ollamatest.Write(store, "shopper-a:latest", genSmallModel(t, 25), map[string]any{"stop": []string{"<|eot_id|>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ollamatest.Write(store, "team/shopper-b:v2", genSmallModel(t, 26), nil); err != nil {
		t.Fatal(err)
	}
	c := modelsConfig()
	c.OllamaModels = store
	ts := startServer(t, c)
	got := loadedModels(t, ts)
	if _, ok := got["shopper-a:latest"]; !ok || len(got) != 2 {
		t.Fatalf("/v1/models: %v", got)
	}
	full := askGreedy(t, ts, "shopper-a:latest")
	if short := askGreedy(t, ts, "shopper-a"); short.Text != full.Text {
		t.Errorf("shopper-a %q, shopper-a:latest %q", short.Text, full.Text)
	}
	askGreedy(t, ts, "team/shopper-b:v2")
	code, one := getJSON(t, ts.URL+"/v1/models/team/shopper-b:v2")
	if code != http.StatusOK || one["id"] != "team/shopper-b:v2" || one["loaded"] != true {
		t.Errorf("GET /v1/models/team/shopper-b:v2: %d %v", code, one)
	}
	if code, _ := getJSON(t, ts.URL+"/v1/models/shopper-a"); code != http.StatusOK {
		t.Errorf("GET /v1/models/ by alias: %d", code)
	}
	for _, st := range ts.stack.models.List() {
		if d := st.Details; len(d.Digest) != 64 || d.Format != "gguf" || d.FileSize <= 0 || st.SizeBytes <= 0 {
			t.Errorf("%s: listing %+v", st.ID, st)
		}
	}
	// An Ollama request's keep_alive 0 on an idle model unloads it.
	if err := ts.stack.models.SetKeepAlive("shopper-a", 0); err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, ts, "shopper-a:latest", false)
	if err := ts.stack.models.Unload("nope"); err == nil {
		t.Error("Unload of an unknown model: no error")
	}
}

// `nextact bench --model a,b` spreads its sessions over two models in
// turn: both serve steps, counted under their own model label.
func TestBenchAlternatesModels(t *testing.T) {
	c := modelsConfig()
	c.Slots, c.Ctx = 4, 2048
	ts := startTwoModels(t, c)
	code, out, rep := runBenchCmd(t, ts.URL, "--model", "a,b", "--sessions", "4", "--steps", "2", "--max-tokens", "160")
	if code != 0 || rep == nil || len(rep.Runs) != 1 || rep.Runs[0].Steps.Success == 0 {
		t.Fatalf("bench: exit %d\n%s", code, out)
	}
	text := metricsText(t, ts.URL)
	for _, m := range []string{"a", "b"} {
		if !strings.Contains(text, `nextact_request_latency_seconds_count{model="`+m+`"}`) {
			t.Errorf("no request of the bench reached model %s", m)
		}
	}
}

// A manifest's sampling defaults apply to the fields a request leaves
// out: temperature 0 and max_tokens 3 make a bare request the first
// tokens of the greedy answer; the request's own fields win.
func TestModelSamplingDefaults(t *testing.T) {
	c := modelsConfig()
	c.ModelsFile = writeManifest(t,
		map[string]any{"id": "d", "path": genSmallModel(t, 21), "keep_alive": -1, "sampling": map[string]any{"temperature": 0, "max_tokens": 3}},
	)
	ts := startServer(t, c)
	full := askGreedy(t, ts, "d") // temperature 0, max_tokens 12 given
	for range 2 {
		code, _, out := post(t, ts.URL+"/v1/chat/completions", map[string]any{
			"model": "d", "seed": 7, "messages": []map[string]string{{"role": "user", "content": "The shopper opens the cart and"}},
		})
		if code != http.StatusOK {
			t.Fatalf("%d %v", code, out)
		}
		text, finish := chatText(t, out)
		n := out["usage"].(map[string]any)["completion_tokens"].(float64)
		if n > 3 || !strings.HasPrefix(full.Text, text) || (finish == "length" && n != 3) {
			t.Errorf("with the model's defaults: %q (%v tokens, %s); greedy with 12 tokens: %q", text, n, finish, full.Text)
		}
	}
	code, _, out := post(t, ts.URL+"/v1/chat/completions", map[string]any{
		"model": "d", "max_tokens": 12, "temperature": 0, "messages": []map[string]string{{"role": "user", "content": "The shopper opens the cart and"}},
	})
	if text, _ := chatText(t, out); code != http.StatusOK || text != full.Text {
		t.Errorf("the request's own max_tokens: %d %q, want %q", code, text, full.Text)
	}
}
