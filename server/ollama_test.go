package server_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/nextact/nextact/server"
)

// ollamaClient is Ollama's own Go client pointed at a served env.
func ollamaClient(t *testing.T, e *env) *api.Client {
	t.Helper()
	u, err := url.Parse(serve(t, e))
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(u, http.DefaultClient)
}

func greedy(numPredict int) map[string]any {
	return map[string]any{"temperature": 0, "num_predict": numPredict}
}

// v1Chat is /v1's greedy answer to messages (JSON), with its usage.
func v1Chat(t *testing.T, e *env, messages string, maxTokens int) (string, usage) {
	t.Helper()
	resp, body := e.do(t, http.MethodPost, "/v1/chat/completions",
		fmt.Sprintf(`{"model":%q,"messages":%s,"temperature":0,"max_tokens":%d}`, testModel, messages, maxTokens))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/v1: %d %s", resp.StatusCode, body)
	}
	var out struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	if err := json.Unmarshal(body, &out); err != nil || len(out.Choices) != 1 {
		t.Fatalf("/v1 answer: %v: %s", err, body)
	}
	return out.Choices[0].Message.Content, out.Usage
}

func TestOllamaMetadata(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := ollamaClient(t, e)
	ctx := context.Background()

	if v, err := c.Version(ctx); err != nil || v != server.OllamaAPIVersion {
		t.Errorf("Version = %q, %v", v, err)
	}
	if err := c.Heartbeat(ctx); err != nil { // HEAD /
		t.Errorf("Heartbeat: %v", err)
	}
	if resp, body := e.do(t, http.MethodGet, "/", ""); resp.StatusCode != 200 || string(body) != "Ollama is running" {
		t.Errorf("GET /: %d %q", resp.StatusCode, body)
	}
	list, err := c.List(ctx)
	if err != nil || len(list.Models) != 2 || list.Models[0].Name != testModel || list.Models[1].Name != mistralModel {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if m := list.Models[0]; m.Model != testModel || !m.ModifiedAt.Equal(testNow.Add(-time.Hour)) || m.Details.Format != "gguf" {
		t.Errorf("List entry %+v", m)
	}
	ps, err := c.ListRunning(ctx)
	if err != nil || len(ps.Models) != 2 || ps.Models[0].Name != testModel || ps.Models[0].ContextLength != testCtx {
		t.Fatalf("ListRunning = %+v, %v", ps, err)
	}
	show, err := c.Show(ctx, &api.ShowRequest{Model: testModel})
	if err != nil {
		t.Fatal(err)
	}
	if show.ModelInfo["nextact.chat_format"] != "llama3" || show.ModelInfo["nextact.context_length"] != float64(testCtx) ||
		!strings.Contains(show.Parameters, `stop "<|eot_id|>"`) || len(show.Capabilities) != 1 || show.Capabilities[0] != "completion" {
		t.Errorf("Show = %+v", show)
	}
	if old, err := c.Show(ctx, &api.ShowRequest{Name: mistralModel}); err != nil || old.ModelInfo["nextact.chat_format"] != "mistral" {
		t.Errorf("Show by the deprecated name: %+v, %v", old, err)
	}
	_, err = c.Show(ctx, &api.ShowRequest{Model: "nope"})
	var se api.StatusError
	if !errors.As(err, &se) || se.StatusCode != 404 || se.ErrorMessage != `model "nope" not found` {
		t.Errorf("Show of an unknown model: %#v", err)
	}
}

// /api/version reports the version of the ollama module in go.mod.
func TestOllamaVersionIsTheModules(t *testing.T) {
	t.Parallel()
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := "github.com/ollama/ollama v" + server.OllamaAPIVersion + "\n"
	if !strings.Contains(string(mod), want) {
		t.Fatalf("go.mod does not require %q", strings.TrimSpace(want))
	}
}

// Chat, streamed and not, through Ollama's client: the same greedy text as
// /v1 for the same messages, with done_reason and token counts.
func TestOllamaChatMatchesV1(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := ollamaClient(t, e)
	want, wantUsage := v1Chat(t, e, `[{"role":"system","content":"be brief"},{"role":"user","content":"hello"}]`, 9)
	for _, stream := range []bool{true, false} {
		req := &api.ChatRequest{Model: testModel, Stream: &stream, Options: greedy(9), Messages: []api.Message{
			{Role: "system", Content: "be brief"}, {Role: "user", Content: "hello"}}}
		var got strings.Builder
		var last api.ChatResponse
		calls := 0
		err := c.Chat(context.Background(), req, func(r api.ChatResponse) error {
			calls++
			if last.Done {
				t.Errorf("stream=%v: a reply after done", stream)
			}
			got.WriteString(r.Message.Content)
			if r.Model != testModel || r.Message.Role != "assistant" || !r.CreatedAt.Equal(testNow) {
				t.Errorf("stream=%v: envelope %+v", stream, r)
			}
			last = r
			return nil
		})
		if err != nil {
			t.Fatalf("stream=%v: %v", stream, err)
		}
		if got.String() != want {
			t.Errorf("stream=%v: text %q, /v1 %q", stream, got.String(), want)
		}
		if !last.Done || last.DoneReason != "length" || last.EvalCount != 9 || last.PromptEvalCount != wantUsage.PromptTokens {
			t.Errorf("stream=%v: last reply %+v, /v1 usage %+v", stream, last, wantUsage)
		}
		if !stream && calls != 1 || stream && calls < 2 {
			t.Errorf("stream=%v: %d replies", stream, calls)
		}
	}
}

// Generate: a prompt is a user turn (after system); a raw one is sent as
// given, with control-token text parsed, like /v1/completions.
func TestOllamaGenerate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := ollamaClient(t, e)
	generate := func(req *api.GenerateRequest) (string, api.GenerateResponse) {
		t.Helper()
		var text strings.Builder
		var last api.GenerateResponse
		if err := c.Generate(context.Background(), req, func(r api.GenerateResponse) error {
			text.WriteString(r.Response)
			last = r
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return text.String(), last
	}
	want, _ := v1Chat(t, e, `[{"role":"system","content":"sys"},{"role":"user","content":"buy"}]`, 7)
	if got, last := generate(&api.GenerateRequest{Model: testModel, System: "sys", Prompt: "buy", Options: greedy(7)}); got != want || last.DoneReason != "length" || last.EvalCount != 7 {
		t.Errorf("generate %q (%+v), /v1 chat %q", got, last, want)
	}

	raw := "<|start_header_id|>page"
	resp, body := e.do(t, http.MethodPost, "/v1/completions", completionBody(raw, `"max_tokens":5`))
	if resp.StatusCode != 200 {
		t.Fatalf("/v1/completions: %d %s", resp.StatusCode, body)
	}
	var v1 struct {
		Choices []struct{ Text string } `json:"choices"`
	}
	if err := json.Unmarshal(body, &v1); err != nil {
		t.Fatal(err)
	}
	no := false
	got, last := generate(&api.GenerateRequest{Model: testModel, Prompt: raw, Raw: true, Stream: &no, Options: greedy(5)})
	if got != v1.Choices[0].Text || got != greedyText('e', 5) || last.PromptEvalCount != len(raw)+1 {
		t.Errorf("raw generate %q (%+v), /v1/completions %q", got, last, v1.Choices[0].Text)
	}
	if special, found := e.tok.specialFor(raw); !found || !special {
		t.Errorf("raw prompt tokenized with parseSpecial=%v (found %v), want true", special, found)
	}
}

// The stream is NDJSON: one JSON object per line, done:false until the
// last; stream:false is one JSON object.
func TestOllamaNDJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	base := serve(t, e)
	for _, path := range []string{"/api/chat", "/api/generate"} {
		body := `{"model":"test-llama","prompt":"hi","messages":[{"role":"user","content":"hi"}],"options":{"temperature":0,"num_predict":6}}`
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		_, _ = raw.ReadFrom(resp.Body)
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-ndjson" {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, ct)
		}
		if !bytes.HasSuffix(raw.Bytes(), []byte("\n")) {
			t.Errorf("%s: the stream does not end with a newline: %q", path, raw.Bytes())
		}
		sc := bufio.NewScanner(&raw)
		var lines []map[string]any
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s: line %d is not one JSON object: %q", path, len(lines), sc.Bytes())
			}
			lines = append(lines, m)
		}
		if len(lines) < 2 {
			t.Fatalf("%s: %d lines", path, len(lines))
		}
		for i, m := range lines {
			if done := m["done"] == true; done != (i == len(lines)-1) {
				t.Errorf("%s: line %d of %d has done=%v", path, i, len(lines), m["done"])
			}
		}
		end := lines[len(lines)-1]
		if end["done_reason"] != "length" || end["eval_count"] != float64(6) || end["prompt_eval_count"] == nil || end["context"] != nil {
			t.Errorf("%s: last line %v", path, end)
		}

		resp, err = http.Post(base+path, "application/json", strings.NewReader(strings.Replace(body, `"options"`, `"stream":false,"options"`, 1)))
		if err != nil {
			t.Fatal(err)
		}
		var one map[string]any
		dec := json.NewDecoder(resp.Body)
		if err := dec.Decode(&one); err != nil || dec.More() || resp.Header.Get("Content-Type") != "application/json" || one["done"] != true {
			t.Errorf("%s stream:false: %v %v %q", path, one, err, resp.Header.Get("Content-Type"))
		}
		resp.Body.Close()
	}
}

// Every refusal has Ollama's shape, {"error":"..."} and nothing else, and
// the right status; the server goes on serving.
func TestOllamaErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	chat := func(fields string) string {
		return `{"model":"test-llama","messages":[{"role":"user","content":"hi"}],"stream":false` + fields + `}`
	}
	gen := func(fields string) string {
		return `{"model":"test-llama","prompt":"hi","stream":false` + fields + `}`
	}
	long := strings.Repeat("x", testCtx)
	cases := []struct {
		name, method, path, body string
		status                   int
		want                     string // substring of the message
	}{
		{"bad json", "POST", "/api/chat", `{"model":`, 400, "not valid JSON"},
		{"not an object", "POST", "/api/generate", `[1]`, 400, "JSON object"},
		{"empty body", "POST", "/api/chat", ``, 400, "empty"},
		{"no model", "POST", "/api/chat", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "'model' is required"},
		{"unknown model", "POST", "/api/chat", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, `model "nope" not found`},
		{"unknown model generate", "POST", "/api/generate", `{"model":"nope","prompt":"x"}`, 404, `model "nope" not found`},
		{"unknown model show", "POST", "/api/show", `{"model":"nope"}`, 404, `model "nope" not found`},
		{"unknown option", "POST", "/api/chat", chat(`,"options":{"temprature":0}`), 400, `"temprature"`},
		{"option of the wrong type", "POST", "/api/chat", chat(`,"options":{"temperature":"hot"}`), 400, `"temperature" must be a number`},
		{"options not an object", "POST", "/api/chat", chat(`,"options":[1]`), 400, "options"},
		{"huge temperature", "POST", "/api/chat", chat(`,"options":{"temperature":1e300}`), 400, "'temperature' must be between"},
		{"huge seed", "POST", "/api/chat", chat(`,"options":{"seed":1e300}`), 400, `"seed" must be an integer`},
		{"fractional top_k", "POST", "/api/chat", chat(`,"options":{"top_k":1.5}`), 400, `"top_k" must be an integer`},
		{"negative top_k", "POST", "/api/chat", chat(`,"options":{"top_k":-1}`), 400, "top_k"},
		{"huge num_ctx", "POST", "/api/chat", chat(`,"options":{"num_ctx":1e15}`), 400, "num_ctx 1000000000000000 is above this model's context of 512"},
		{"num_ctx above the slot", "POST", "/api/generate", gen(`,"options":{"num_ctx":513}`), 400, "num_ctx 513 is above"},
		{"negative num_ctx", "POST", "/api/generate", gen(`,"options":{"num_ctx":-1}`), 400, "num_ctx"},
		{"num_predict -3", "POST", "/api/generate", gen(`,"options":{"num_predict":-3}`), 400, "num_predict"},
		{"repeat penalty", "POST", "/api/chat", chat(`,"options":{"repeat_penalty":1.1}`), 400, `"repeat_penalty" is not supported`},
		{"min_p out of range", "POST", "/api/chat", chat(`,"options":{"min_p":2}`), 400, "'min_p' must be between 0 and 1"},
		{"presence_penalty out of range", "POST", "/api/generate", gen(`,"options":{"presence_penalty":-3}`), 400, "'presence_penalty' must be between"},
		{"load option", "POST", "/api/chat", chat(`,"options":{"num_gpu":99}`), 400, "--gpu-layers"},
		{"stop of numbers", "POST", "/api/chat", chat(`,"options":{"stop":["a",1]}`), 400, `"stop" must be an array of strings`},
		{"too many stops", "POST", "/api/chat", chat(`,"options":{"stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]}`), 400, "at most 16"},
		{"format xml", "POST", "/api/chat", chat(`,"format":"xml"`), 400, "'format'"},
		{"format number", "POST", "/api/generate", gen(`,"format":5`), 400, "'format'"},
		{"format bad schema", "POST", "/api/generate", gen(`,"format":{"type":"object"}`), 400, "structured outputs"},
		{"template", "POST", "/api/generate", gen(`,"template":"{{ .Prompt }}"`), 400, "'template' is not supported"},
		{"raw with system", "POST", "/api/generate", gen(`,"raw":true,"system":"s"`), 400, "raw"},
		{"suffix", "POST", "/api/generate", gen(`,"suffix":"end"`), 400, "suffix"},
		{"context", "POST", "/api/generate", gen(`,"context":[1,2,3]`), 400, "'context' is not supported"},
		{"images", "POST", "/api/generate", gen(`,"images":["aGk="]`), 400, "images"},
		{"think", "POST", "/api/chat", chat(`,"think":true`), 400, "does not support thinking"},
		{"think level", "POST", "/api/generate", gen(`,"think":"high"`), 400, "does not support thinking"},
		{"tools", "POST", "/api/chat", chat(`,"tools":[{"type":"function","function":{"name":"f"}}]`), 400, "does not support tools"},
		{"tool role", "POST", "/api/chat", `{"model":"test-llama","messages":[{"role":"tool","content":"x"}]}`, 400, "Invalid role"},
		{"message images", "POST", "/api/chat", `{"model":"test-llama","messages":[{"role":"user","content":"x","images":["aGk="]}]}`, 400, "images"},
		{"truncate", "POST", "/api/chat", chat(`,"truncate":true`), 400, "truncate"},
		{"top_logprobs without logprobs", "POST", "/api/chat", chat(`,"top_logprobs":2`), 400, "needs"},
		{"top_logprobs 21", "POST", "/api/generate", gen(`,"logprobs":true,"top_logprobs":21`), 400, "between 0 and 20"},
		{"bad keep_alive", "POST", "/api/generate", gen(`,"keep_alive":"soon"`), 400, "keep_alive"},
		{"keep_alive object", "POST", "/api/generate", gen(`,"keep_alive":{}`), 400, "keep_alive"},
		{"prompt over the context", "POST", "/api/generate", `{"model":"test-llama","raw":true,"prompt":"` + long + `"}`, 400, "maximum context length is 512"},
		{"pull", "POST", "/api/pull", `{"model":"llama3.2"}`, 501, "nextact serves local models only"},
		{"push", "POST", "/api/push", `{}`, 501, "local models only"},
		{"create", "POST", "/api/create", `{}`, 501, "local models only"},
		{"copy", "POST", "/api/copy", `{}`, 501, "local models only"},
		{"delete", "DELETE", "/api/delete", `{}`, 501, "local models only"},
		{"blob", "POST", "/api/blobs/sha256:00", ``, 501, "local models only"},
		{"embed", "POST", "/api/embed", `{}`, 501, "local models only"},
		{"embeddings", "POST", "/api/embeddings", `{}`, 501, "local models only"},
		{"unknown endpoint", "GET", "/api/nothing", ``, 404, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, body := e.do(t, tc.method, tc.path, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			msg := ollamaError(t, body)
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message %q lacks %q", msg, tc.want)
			}
		})
	}
	// HEAD of a blob is a 501 too, without a body.
	if resp, _ := e.do(t, http.MethodHead, "/api/blobs/sha256:00", ""); resp.StatusCode != 501 {
		t.Errorf("HEAD blob: %d", resp.StatusCode)
	}
	// Still serving, and /v1 keeps OpenAI's shape.
	if resp, body := e.do(t, http.MethodPost, "/api/chat", chat(`,"options":{"temperature":0,"num_predict":2}`)); resp.StatusCode != 200 {
		t.Errorf("after the errors: %d %s", resp.StatusCode, body)
	}
	if _, body := e.do(t, http.MethodPost, "/v1/chat/completions", `{`); decodeErr(t, body).Error == nil {
		t.Errorf("/v1 error: %s", body)
	}
}

// ollamaError checks that b is exactly {"error":"..."} and returns the message.
func ollamaError(t *testing.T, b []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("error body is not JSON: %q", b)
	}
	msg, ok := m["error"].(string)
	if !ok || len(m) != 1 || msg == "" {
		t.Fatalf("error body is not {\"error\":\"...\"}: %s", b)
	}
	return msg
}

// Options and fields Ollama clients send that are honoured: neutral
// penalties, null values, keep_alive in each of Ollama's forms, a huge
// num_predict (capped by the context), -2 (fill the context), think:false,
// and a request without prompt or messages (Ollama's load and unload).
func TestOllamaAccepted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	cases := []struct {
		name, path, body, reason string
	}{
		{"neutral options", "/api/chat", `{"model":"test-llama","messages":[{"role":"user","content":"hi"}],"stream":false,"options":{"num_predict":3,"repeat_penalty":1,"min_p":0,"typical_p":1,"presence_penalty":0,"frequency_penalty":0,"repeat_last_n":64,"seed":-1,"top_p":null}}`, "length"},
		{"penalties and min_p", "/api/chat", `{"model":"test-llama","messages":[{"role":"user","content":"hi"}],"stream":false,"options":{"num_predict":3,"min_p":0.05,"presence_penalty":1.5,"frequency_penalty":-0.5}}`, "length"},
		{"keep_alive string", "/api/generate", `{"model":"test-llama","prompt":"hi","stream":false,"keep_alive":"5m","options":{"num_predict":2}}`, "length"},
		{"keep_alive seconds", "/api/generate", `{"model":"test-llama","prompt":"hi","stream":false,"keep_alive":300,"options":{"num_predict":2}}`, "length"},
		{"keep_alive forever", "/api/generate", `{"model":"test-llama","prompt":"hi","stream":false,"keep_alive":-1,"options":{"num_predict":2}}`, "length"},
		{"huge num_predict", "/api/generate", `{"model":"test-llama","prompt":"hi","raw":true,"stream":false,"options":{"num_predict":1e15,"num_ctx":40}}`, "length"},
		{"fill the context", "/api/generate", `{"model":"test-llama","prompt":"hi","raw":true,"stream":false,"options":{"num_predict":-2,"num_ctx":40}}`, "length"},
		{"think false", "/api/chat", `{"model":"test-llama","messages":[{"role":"user","content":"hi"}],"stream":false,"think":false,"options":{"num_predict":1}}`, "length"},
		{"load", "/api/generate", `{"model":"test-llama"}`, "load"},
		{"load chat", "/api/chat", `{"model":"test-llama","messages":[]}`, "load"},
		{"unload", "/api/generate", `{"model":"test-llama","keep_alive":0}`, "unload"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, body := e.do(t, http.MethodPost, tc.path, tc.body)
			var out api.GenerateResponse
			if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil || !out.Done || out.DoneReason != tc.reason {
				t.Fatalf("%d %s, want done_reason %q", resp.StatusCode, body, tc.reason)
			}
		})
	}
	// num_ctx 40 bounds prompt plus completion: the raw prompt (BOS and
	// one fake token per byte) and what was generated fill exactly 40.
	_, body := e.do(t, http.MethodPost, "/api/generate", `{"model":"test-llama","prompt":"hi","raw":true,"stream":false,"options":{"num_predict":-2,"num_ctx":40}}`)
	var out api.GenerateResponse
	if err := json.Unmarshal(body, &out); err != nil || out.PromptEvalCount+out.EvalCount != 40 {
		t.Errorf("num_ctx 40: %s", body)
	}
}

// Overload: a full queue is a 503 with Retry-After in Ollama's shape, as
// on /v1, streamed or not.
func TestOllamaOverload(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	e := newEnv(t, envOptions{slots: 1, queue: 1, engine: func(f *fakeEngine) { f.gate = gate }})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			e.do(t, http.MethodPost, "/api/generate", `{"model":"test-llama","prompt":"hold","stream":false,"options":{"num_predict":2}}`)
		})
	}
	waitFor(t, "one running and one waiting", func() bool {
		st := e.sched.Stats()
		return st.Running == 1 && st.Waiting == 1
	})
	for _, stream := range []bool{false, true} {
		resp, body := e.do(t, http.MethodPost, "/api/chat", fmt.Sprintf(`{"model":"test-llama","messages":[{"role":"user","content":"x"}],"stream":%v}`, stream))
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
			t.Errorf("stream=%v: %d Retry-After %q: %s", stream, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if msg := ollamaError(t, body); !strings.Contains(msg, "at capacity") {
			t.Errorf("stream=%v: %q", stream, msg)
		}
	}
	close(gate)
	wg.Wait()
}

// A generation that fails after the stream started ends it with an error
// line, which Ollama's client returns as the error.
func TestOllamaStreamFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{engine: func(f *fakeEngine) { f.failAt = 3 }})
	c := ollamaClient(t, e)
	var got strings.Builder
	err := c.Generate(context.Background(), &api.GenerateRequest{Model: testModel, Prompt: "x", Raw: true, Options: greedy(50)},
		func(r api.GenerateResponse) error {
			got.WriteString(r.Response)
			if r.Done {
				t.Errorf("a failed stream ended with done: %+v", r)
			}
			return nil
		})
	if err == nil || !strings.Contains(err.Error(), "The model failed while generating") {
		t.Fatalf("error %v after %q", err, got.String())
	}
}

// API keys guard /api/* as they guard /v1; / stays open.
func TestOllamaAPIKeys(t *testing.T) {
	t.Parallel()
	e := newOpsEnv(t, opsOptions{cfg: server.Config{APIKeys: testKeys}})
	e.srv.MarkReady()
	for _, tc := range []struct {
		method, path, key string
		status            int
	}{
		{"GET", "/api/tags", "", 401},
		{"POST", "/api/chat", "wrong", 401},
		{"GET", "/api/tags", testKeys[0].Key, 200},
		{"GET", "/", "", 200},
		{"HEAD", "/", "", 200},
	} {
		req, _ := http.NewRequest(tc.method, tc.path, strings.NewReader(`{}`))
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		resp, err := e.srv.App().Test(req, 5000)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s key %q: %d %s", tc.method, tc.path, tc.key, resp.StatusCode, b.Bytes())
		}
		if tc.status == 401 {
			ollamaError(t, b.Bytes())
		}
	}
}

// The Ollama API shares /v1's rate limits, draining and metrics: the same
// client's bucket, 429 and 503 in Ollama's shape with Retry-After, and the
// scheduler's counters and admission decisions in /metrics.
func TestOllamaSharesLimitsAndMetrics(t *testing.T) {
	t.Parallel()
	e := newOpsEnv(t, opsOptions{cfg: server.Config{RateLimit: 0.5, RateBurst: 2}})
	e.srv.MarkReady()
	gen := `{"model":"test-llama","prompt":"hi","raw":true,"stream":false,"options":{"num_predict":3}}`
	if resp, body := e.do(t, http.MethodPost, "/api/generate", gen); resp.StatusCode != 200 {
		t.Fatalf("first: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.chat(t); resp.StatusCode != 200 { // /v1 takes the second of the burst
		t.Fatalf("/v1: %d %s", resp.StatusCode, body)
	}
	resp, body := e.do(t, http.MethodPost, "/api/chat", `{"model":"test-llama","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" || !strings.Contains(ollamaError(t, body), "Rate limit") {
		t.Errorf("over the rate: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	m := e.metricsText(t)
	if got := value(parseMetrics(t, m), "nextact_requests_finished_total", "reason=length"); got != 2 {
		t.Errorf("/metrics: %v requests finished by length, want 2", got)
	}
	for _, want := range []string{
		`nextact_admission_decisions_total{outcome="rejected",priority="normal",reason="rate_limited"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if err := e.srv.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	resp, body = e.do(t, http.MethodPost, "/api/generate", gen)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(ollamaError(t, body), "shutting down") {
		t.Errorf("draining: %d %s", resp.StatusCode, body)
	}
}

// Bodies over --body-limit, as sent or once inflated, are refused on /api
// as on /v1, in Ollama's shape.
func TestOllamaBodyLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: server.Config{BodyLimit: 2048}})
	base := serve(t, e)
	big := `{"model":"test-llama","prompt":"` + strings.Repeat("x", 4096) + `"}`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(big))
	_ = zw.Close()
	for name, send := range map[string]func() (*http.Response, error){
		"plain": func() (*http.Response, error) {
			return http.Post(base+"/api/generate", "application/json", strings.NewReader(big))
		},
		"gzip": func() (*http.Response, error) {
			req, _ := http.NewRequest(http.MethodPost, base+"/api/generate", bytes.NewReader(gz.Bytes()))
			req.Header.Set("Content-Encoding", "gzip")
			return http.DefaultClient.Do(req)
		},
	} {
		resp, err := send()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(ollamaError(t, b.Bytes()), "2048 bytes") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b.Bytes())
		}
	}
}
