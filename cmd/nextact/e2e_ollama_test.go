package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
)

// ollamaOn is Ollama's own Go client pointed at ts.
func ollamaOn(t *testing.T, ts *testServer) *api.Client {
	t.Helper()
	u, err := url.Parse(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(u, http.DefaultClient)
}

// ollamaChat runs one chat through the client and returns the text and the
// last reply; replies counts the callbacks.
func ollamaChat(t *testing.T, c *api.Client, req *api.ChatRequest) (text string, last api.ChatResponse, replies int) {
	t.Helper()
	var b strings.Builder
	err := c.Chat(context.Background(), req, func(r api.ChatResponse) error {
		b.WriteString(r.Message.Content)
		last = r
		replies++
		return nil
	})
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	return b.String(), last, replies
}

func ollamaGen(t *testing.T, c *api.Client, req *api.GenerateRequest) (string, api.GenerateResponse) {
	t.Helper()
	var b strings.Builder
	var last api.GenerateResponse
	if err := c.Generate(context.Background(), req, func(r api.GenerateResponse) error {
		b.WriteString(r.Response)
		last = r
		return nil
	}); err != nil {
		t.Fatalf("generate: %v", err)
	}
	return b.String(), last
}

// Ollama's Go client against the real engine: the metadata endpoints, and
// chat and generate, streamed and not, giving /v1's greedy answers for the
// same prompts, with Ollama's counts and done_reason.
func TestOllamaClient(t *testing.T) {
	ts := startServer(t, testConfig())
	c := ollamaOn(t, ts)
	ctx := context.Background()
	id := ts.modelID()

	if v, err := c.Version(ctx); err != nil || v == "" {
		t.Errorf("Version: %q %v", v, err)
	}
	if err := c.Heartbeat(ctx); err != nil {
		t.Errorf("Heartbeat: %v", err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list.Models) != 1 || list.Models[0].Name != id {
		t.Fatalf("List: %+v %v", list, err)
	}
	ps, err := c.ListRunning(ctx)
	if err != nil || len(ps.Models) != 1 || ps.Models[0].Name != id || ps.Models[0].ContextLength != testConfig().Ctx {
		t.Fatalf("ListRunning: %+v %v", ps, err)
	}
	show, err := c.Show(ctx, &api.ShowRequest{Model: id})
	if err != nil || show.ModelInfo["nextact.chat_format"] != "llama3" || !strings.Contains(show.Parameters, "stop") {
		t.Fatalf("Show: %+v %v", show, err)
	}

	greedy := map[string]any{"temperature": 0, "num_predict": 24}
	for _, content := range []string{"hi", "Which product does the shopper open?"} {
		code, _, out := post(t, ts.URL+"/v1/chat/completions", chatReq(id, content, nil))
		if code != 200 {
			t.Fatalf("/v1: %d %v", code, out)
		}
		want, finish := chatText(t, out)
		usage := out["usage"].(map[string]any)
		if want == "" {
			t.Fatalf("/v1 answered %q with no text: nothing to compare", content)
		}
		for _, stream := range []bool{true, false} {
			got, last, replies := ollamaChat(t, c, &api.ChatRequest{Model: id, Stream: &stream, Options: greedy,
				Messages: []api.Message{{Role: "user", Content: content}}})
			if got != want || last.DoneReason != finish || !last.Done {
				t.Errorf("%q stream=%v: chat %q (%s), /v1 %q (%s)", content, stream, got, last.DoneReason, want, finish)
			}
			if last.EvalCount != int(usage["completion_tokens"].(float64)) || last.PromptEvalCount != int(usage["prompt_tokens"].(float64)) {
				t.Errorf("%q stream=%v: counts %d/%d, /v1 %v", content, stream, last.PromptEvalCount, last.EvalCount, usage)
			}
			if last.TotalDuration <= 0 || last.EvalDuration < 0 || last.PromptEvalDuration <= 0 {
				t.Errorf("%q stream=%v: durations %+v", content, stream, last.Metrics)
			}
			if !stream && replies != 1 || stream && want != "" && replies < 2 {
				t.Errorf("%q stream=%v: %d replies", content, stream, replies)
			}
		}
		// Generate renders the prompt as one user turn: the chat's answer.
		if got, last := ollamaGen(t, c, &api.GenerateRequest{Model: id, Prompt: content, Options: greedy}); got != want || last.DoneReason != finish {
			t.Errorf("%q: generate %q, chat %q", content, got, want)
		}
	}

	// A raw prompt is /v1/completions' prompt.
	raw := "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
	code, _, out := post(t, ts.URL+"/v1/completions", map[string]any{"model": id, "prompt": raw, "temperature": 0, "max_tokens": 16})
	if code != 200 {
		t.Fatalf("/v1/completions: %d %v", code, out)
	}
	want := out["choices"].([]any)[0].(map[string]any)["text"].(string)
	if got, _ := ollamaGen(t, c, &api.GenerateRequest{Model: id, Prompt: raw, Raw: true, Options: map[string]any{"temperature": 0, "num_predict": 16}}); got != want {
		t.Errorf("raw generate %q, /v1/completions %q", got, want)
	}

	// Ollama's defaults (temperature 0.8, top_k 40, top_p 0.9) sample.
	if _, last, _ := ollamaChat(t, c, &api.ChatRequest{Model: id, Messages: []api.Message{{Role: "user", Content: "hi"}}}); !last.Done || last.EvalCount < 1 {
		t.Errorf("default options: %+v", last)
	}

	_, err = c.Show(ctx, &api.ShowRequest{Model: "llama3.2:1b"})
	var se api.StatusError
	if !errors.As(err, &se) || se.StatusCode != 404 || !strings.Contains(se.ErrorMessage, "not found") {
		t.Errorf("unknown model: %#v", err)
	}
	err = c.Chat(ctx, &api.ChatRequest{Model: id, Messages: []api.Message{{Role: "user", Content: "hi"}}, Options: map[string]any{"mirostat": 2}},
		func(api.ChatResponse) error { return nil })
	if !errors.As(err, &se) || se.StatusCode != 400 || !strings.Contains(se.ErrorMessage, "mirostat") {
		t.Errorf("unknown option: %#v", err)
	}
	// Hostile inputs on the real engine: refused in Ollama's shape, or
	// bounded (a huge num_predict ends at the context: done_reason length,
	// or stop within it when the sampled text ends its turn).
	for _, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"model":` + fmt.Sprintf("%q", id) + `,"prompt":"hi","stream":false,"options":{"num_predict":1e15,"num_ctx":64}}`, 200, "length"},
		{`{"model":` + fmt.Sprintf("%q", id) + `,"prompt":"hi","stream":false,"options":{"num_predict":1e18}}`, 400, "integer"},
		{`{"model":` + fmt.Sprintf("%q", id) + `,"prompt":"hi","stream":false,"options":{"num_ctx":1e18}}`, 400, "num_ctx"},
		{`{"model":` + fmt.Sprintf("%q", id) + `,"prompt":"hi","stream":false,"options":{"seed":1e300,"top_k":1e300}}`, 400, "integer"},
		{`{"model":` + fmt.Sprintf("%q", id) + `,"prompt":` + fmt.Sprintf("%q", strings.Repeat("<|eot_id|>", 2000)) + `,"raw":true,"stream":false}`, 400, "maximum context length"},
		{`{"model":"nope","prompt":"hi"}`, 404, "not found"},
		{`{"model":`, 400, "JSON"},
	} {
		code, _, out := post(t, ts.URL+"/api/generate", tc.body)
		got := fmt.Sprint(out["error"])
		if code == 200 {
			// Bounded by num_ctx: it ends at the context (length), or
			// earlier when the sampled text reaches an end of turn.
			got = fmt.Sprint(out["done_reason"])
			if n, _ := out["prompt_eval_count"].(float64); got == "stop" && n > 0 {
				if e, _ := out["eval_count"].(float64); n+e <= 64 {
					got = tc.want
				}
			}
		}
		if code != tc.status || !strings.Contains(got, tc.want) {
			t.Errorf("%.80s: %d %v", tc.body, code, out)
		}
	}
	err = c.Pull(ctx, &api.PullRequest{Model: "llama3.2"}, func(api.ProgressResponse) error { return nil })
	if !errors.As(err, &se) || se.StatusCode != 501 || !strings.Contains(se.ErrorMessage, "local models only") {
		t.Errorf("pull: %#v", err)
	}
}

// format as a JSON schema, or "json": every output parses, and a schema's
// matches it, sampled at a high temperature and cut short by num_predict.
func TestOllamaFormat(t *testing.T) {
	ts := startServer(t, testConfig())
	c := ollamaOn(t, ts)
	id := ts.modelID()
	schema := json.RawMessage(`{"type":"object","properties":{"type":{"enum":["click","terminate"]},"name":{"type":"string","maxLength":20},"n":{"type":"integer"}},"required":["type","name","n"],"additionalProperties":false}`)
	for i := range 12 {
		for _, format := range []json.RawMessage{json.RawMessage(`"json"`), schema} {
			opts := map[string]any{"temperature": 1.2, "seed": i, "num_predict": 40 + i*3}
			var text string
			if i%2 == 0 {
				text, _, _ = ollamaChat(t, c, &api.ChatRequest{Model: id, Format: format, Options: opts,
					Messages: []api.Message{{Role: "user", Content: fmt.Sprintf("act %d", i)}}})
			} else {
				text, _ = ollamaGen(t, c, &api.GenerateRequest{Model: id, Format: format, Options: opts, Prompt: fmt.Sprintf("act %d", i)})
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(text), &m); err != nil {
				t.Fatalf("format %s: output %q does not parse: %v", format, text, err)
			}
			if format[0] == '{' {
				typ, _ := m["type"].(string)
				name, _ := m["name"].(string)
				n, isNum := m["n"].(float64)
				if (typ != "click" && typ != "terminate") || len(name) > 20 || !isNum || n != float64(int64(n)) || len(m) != 3 {
					t.Fatalf("output %q does not match the schema", text)
				}
			}
		}
	}
}

// The stream is NDJSON on the wire: one object per line, each parsed alone,
// done:false until the last, which carries the counts.
func TestOllamaNDJSONFraming(t *testing.T) {
	ts := startServer(t, testConfig())
	body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}],"options":{"temperature":0,"num_predict":12}}`, ts.modelID())
	resp, err := http.Post(ts.URL+"/api/chat", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	var lines []map[string]any
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] != '\n' {
			t.Fatalf("a line without its newline: %q", line)
		}
		if err != nil {
			break
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %d: %q: %v", len(lines), line, err)
		}
		lines = append(lines, m)
	}
	if len(lines) < 2 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, m := range lines {
		if done := m["done"] == true; done != (i == len(lines)-1) {
			t.Errorf("line %d of %d: done=%v", i, len(lines), m["done"])
		}
	}
	last := lines[len(lines)-1]
	for _, k := range []string{"done_reason", "prompt_eval_count", "eval_count", "total_duration", "prompt_eval_duration"} {
		if last[k] == nil {
			t.Errorf("last line lacks %s: %v", k, last)
		}
	}
}
