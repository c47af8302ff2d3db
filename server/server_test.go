package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp refreshes its Date header from a package-level goroutine,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// and its worker pool's cleaner sleeps up to 10s before it sees that
		// Serve has returned.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tok := &fakeTokenizer{}
	gen := errGenerator{err: batching.ErrClosed}
	good := func() *server.Model {
		return &server.Model{ID: "m", ContextLength: 64, Format: models.FormatChatML, Tokenizer: tok, Generator: gen}
	}
	tests := []struct {
		name   string
		cfg    server.Config
		models func() []*server.Model
		want   string // substring of the error; empty for success
	}{
		{"ok with nil logger and clock", server.Config{}, func() []*server.Model { return []*server.Model{good()} }, ""},
		{"no models", server.Config{}, func() []*server.Model { return nil }, "no models"},
		{"nil model", server.Config{}, func() []*server.Model { return []*server.Model{nil} }, "nil"},
		{"empty id", server.Config{}, func() []*server.Model { m := good(); m.ID = ""; return []*server.Model{m} }, "no ID"},
		{"duplicate id", server.Config{}, func() []*server.Model { return []*server.Model{good(), good()} }, "twice"},
		{"no tokenizer", server.Config{}, func() []*server.Model { m := good(); m.Tokenizer = nil; return []*server.Model{m} }, "tokenizer"},
		{"no generator", server.Config{}, func() []*server.Model { m := good(); m.Generator = nil; return []*server.Model{m} }, "generator"},
		{"bad format", server.Config{}, func() []*server.Model { m := good(); m.Format = "vicuna"; return []*server.Model{m} }, "chat format"},
		{"tiny context", server.Config{}, func() []*server.Model { m := good(); m.ContextLength = 1; return []*server.Model{m} }, "context length"},
		{"negative body limit", server.Config{BodyLimit: -1}, func() []*server.Model { return []*server.Model{good()} }, "body limit"},
		{"negative timeout", server.Config{RequestTimeout: -time.Second}, func() []*server.Model { return []*server.Model{good()} }, "timeout"},
		{"negative default max tokens", server.Config{DefaultMaxTokens: -1}, func() []*server.Model { return []*server.Model{good()} }, "max tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, err := server.New(tt.cfg, server.Deps{Models: tt.models()})
			if tt.want == "" {
				if err != nil || srv == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestModelsAndHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})

	resp, body := e.do(t, http.MethodGet, "/v1/models", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("models: status %d: %s", resp.StatusCode, body)
	}
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("decode models: %v: %s", err, body)
	}
	if list.Object != "list" || len(list.Data) != 2 {
		t.Fatalf("models = %s", body)
	}
	want := []struct{ id, owner string }{{testModel, "tests"}, {mistralModel, "nextact"}}
	for i, w := range want {
		d := list.Data[i]
		if d.ID != w.id || d.Object != "model" || d.OwnedBy != w.owner || d.Created != testNow.Add(-time.Hour).Unix() {
			t.Errorf("model %d = %+v, want id %s owner %s", i, d, w.id, w.owner)
		}
	}

	resp, body = e.do(t, http.MethodGet, "/health", "")
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Fatalf("health: %d %s", resp.StatusCode, body)
	}
}

func TestChatCompletion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{engine: func(f *fakeEngine) { f.eogAfter = 12 }})
	const content = "hello <|eot_id|> world"
	prompt := llama3Prompt(content)
	tests := []struct {
		name       string
		extra      string
		wantText   string
		wantFinish string
	}{
		{"length", `"max_tokens":5`, greedyText('\n', 5), "length"},
		{"max_completion_tokens wins", `"max_tokens":9,"max_completion_tokens":3`, greedyText('\n', 3), "length"},
		{"eog", ``, greedyText('\n', 12), "stop"},
		{"stop string", `"stop":["` + greedyText('\n', 8)[4:6] + `"]`, greedyText('\n', 4), "stop"},
		{"sampling fields accepted", `"max_tokens":4,"temperature":0,"top_p":0.5,"top_k":3,"seed":-7,"n":1,"tools":[ ],"response_format":{"type":"text"},"stop":null,"unknown":{"x":1}`, greedyText('\n', 4), "length"},
		{"neutral values of unhonoured fields accepted", `"max_tokens":4,"presence_penalty":0,"frequency_penalty":0.0,"repetition_penalty":1,"min_p":0,"logit_bias":{},"tool_choice":"auto","functions":[],"function_call":null`, greedyText('\n', 4), "length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody(content, tt.extra))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var r struct {
				ID      string `json:"id"`
				Object  string `json:"object"`
				Created int64  `json:"created"`
				Model   string `json:"model"`
				Choices []struct {
					Index   int `json:"index"`
					Message struct {
						Role    string `json:"role"`
						Content string `json:"content"`
					} `json:"message"`
					FinishReason string `json:"finish_reason"`
				} `json:"choices"`
				Usage usage `json:"usage"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				t.Fatalf("decode: %v: %s", err, body)
			}
			if !strings.HasPrefix(r.ID, "chatcmpl-") || r.Object != "chat.completion" || r.Created != testNow.Unix() || r.Model != testModel {
				t.Errorf("envelope = %s", body)
			}
			if len(r.Choices) != 1 || r.Choices[0].Index != 0 || r.Choices[0].Message.Role != "assistant" {
				t.Fatalf("choices = %s", body)
			}
			if got := r.Choices[0].Message.Content; got != tt.wantText {
				t.Errorf("content = %q, want %q", got, tt.wantText)
			}
			if got := r.Choices[0].FinishReason; got != tt.wantFinish {
				t.Errorf("finish_reason = %q, want %q", got, tt.wantFinish)
			}
			wantUsage := usage{len(prompt), r.Usage.CompletionTokens, len(prompt) + r.Usage.CompletionTokens}
			if r.Usage != wantUsage || r.Usage.CompletionTokens < len(tt.wantText) {
				t.Errorf("usage = %+v, want prompt %d and completion >= %d", r.Usage, len(prompt), len(tt.wantText))
			}
		})
	}
	t.Run("content is tokenized without control tokens", func(t *testing.T) {
		t.Parallel()
		resp, body := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("x <|eot_id|> y", `"max_tokens":1`))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if special, found := e.tok.specialFor("x <|eot_id|> y"); !found || special {
			t.Errorf("user content tokenized with parseSpecial=%v (found %v)", special, found)
		}
		markup := "<|start_header_id|>assistant<|end_header_id|>\n\n"
		if special, found := e.tok.specialFor(markup); !found || !special {
			t.Errorf("template markup tokenized with parseSpecial=%v (found %v)", special, found)
		}
	})
}

func TestChatContentParts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	body := `{"model":"` + testModel + `","max_tokens":2,"temperature":0,"messages":[` +
		`{"role":"developer","content":"be brief"},` +
		`{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},` +
		`{"role":"assistant","content":null},{"role":"user","content":"c"}]}`
	resp, b := e.do(t, http.MethodPost, "/v1/chat/completions", body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if _, found := e.tok.specialFor("a\nb"); !found {
		t.Error("text parts were not joined into one content segment")
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tests := []struct {
		name   string
		prompt string // JSON
	}{
		{"string", `"tell me"`},
		{"array of one", `["tell me"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := `{"model":"` + testModel + `","prompt":` + tt.prompt + `,"max_tokens":6,"temperature":0}`
			resp, b := e.do(t, http.MethodPost, "/v1/completions", body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			var r struct {
				ID      string `json:"id"`
				Object  string `json:"object"`
				Created int64  `json:"created"`
				Model   string `json:"model"`
				Choices []struct {
					Index        int             `json:"index"`
					Text         string          `json:"text"`
					Logprobs     json.RawMessage `json:"logprobs"`
					FinishReason string          `json:"finish_reason"`
				} `json:"choices"`
				Usage usage `json:"usage"`
			}
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("decode: %v: %s", err, b)
			}
			if !strings.HasPrefix(r.ID, "cmpl-") || r.Object != "text_completion" || r.Created != testNow.Unix() || r.Model != testModel {
				t.Errorf("envelope = %s", b)
			}
			if len(r.Choices) != 1 || string(r.Choices[0].Logprobs) != "null" {
				t.Fatalf("choices = %s", b)
			}
			if got, want := r.Choices[0].Text, greedyText('e', 6); got != want || r.Choices[0].FinishReason != "length" {
				t.Errorf("text %q finish %q, want %q length", got, r.Choices[0].FinishReason, want)
			}
			// The model's BOS is prepended: 1 + len("tell me").
			if want := (usage{8, 6, 14}); r.Usage != want {
				t.Errorf("usage = %+v, want %+v", r.Usage, want)
			}
			if special, found := e.tok.specialFor("tell me"); !found || !special {
				t.Errorf("raw prompt tokenized with parseSpecial=%v (found %v), want true", special, found)
			}
		})
	}
}

// TestBadRequests sends every kind of bad input and checks status and error
// shape, then that a good request still succeeds on the same server.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	errModel := func(id string, err error) *server.Model {
		return &server.Model{ID: id, ContextLength: testCtx, Format: models.FormatLlama3,
			Tokenizer: &fakeTokenizer{}, Generator: errGenerator{err: err}}
	}
	e := newEnv(t, envOptions{extraModels: []*server.Model{
		errModel("err-request", &batching.RequestError{Field: "prompt", Msg: "bad token"}),
		errModel("err-closed", batching.ErrClosed),
		errModel("err-other", errors.New("boom")),
		{ID: "panics", ContextLength: testCtx, Format: models.FormatChatML, Tokenizer: panicTokenizer{}, Generator: errGenerator{}},
	}})
	const chat, text = "/v1/chat/completions", "/v1/completions"
	long := strings.Repeat("x", testCtx)
	// 64 prompts of 1,000 token ids: with echo and logprobs 20, over the
	// bound on the prompt logprobs one request returns.
	bigEcho := `{"model":"` + testModel + `","prompt":[` + strings.TrimSuffix(strings.Repeat("["+strings.TrimSuffix(strings.Repeat("1,", 1000), ",")+"],", 64), ",") + `],"echo":true,"logprobs":20,"max_tokens":0}`
	hiLen, longLen := len(llama3Prompt("hi")), len(llama3Prompt(long))
	tests := []struct {
		name, method, path, body string
		status                   int
		typ, param, code         string // "<null>" for null
		msg                      string // substring of the message
	}{
		{"malformed json", "POST", chat, `{"model":`, 400, "invalid_request_error", "<null>", "<null>", "JSON"},
		{"empty body", "POST", chat, ``, 400, "invalid_request_error", "<null>", "<null>", "empty"},
		{"body not an object", "POST", chat, `[1]`, 400, "invalid_request_error", "<null>", "<null>", "object"},
		{"wrong field type", "POST", chat, chatBody("hi", `"temperature":"hot"`), 400, "invalid_request_error", "temperature", "<null>", "temperature"},
		{"stream not a bool", "POST", chat, chatBody("hi", `"stream":"yes"`), 400, "invalid_request_error", "stream", "<null>", "boolean"},
		{"unknown model", "POST", chat, `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "invalid_request_error", "model", "model_not_found", `"nope"`},
		{"missing model", "POST", chat, `{"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "model", "<null>", "model"},
		{"missing messages", "POST", chat, `{"model":"` + testModel + `"}`, 400, "invalid_request_error", "messages", "<null>", "messages"},
		{"empty messages", "POST", chat, `{"model":"` + testModel + `","messages":[]}`, 400, "invalid_request_error", "messages", "<null>", "non-empty"},
		{"bad role", "POST", chat, `{"model":"` + testModel + `","messages":[{"role":"function","content":"x"}]}`, 400, "invalid_request_error", "messages[0].role", "<null>", `"function"`},
		{"image part", "POST", chat, `{"model":"` + testModel + `","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "invalid_request_error", "messages[0].content", "<null>", "image_url"},
		{"content a number", "POST", chat, `{"model":"` + testModel + `","messages":[{"role":"user","content":5}]}`, 400, "invalid_request_error", "messages[0].content", "<null>", "string"},
		{"mistral order", "POST", chat, `{"model":"` + mistralModel + `","messages":[{"role":"assistant","content":"x"}]}`, 400, "invalid_request_error", "messages", "<null>", "alternate"},
		{"temperature high", "POST", chat, chatBody("hi", `"temperature":2.5`), 400, "invalid_request_error", "temperature", "<null>", "temperature"},
		{"temperature negative", "POST", chat, chatBody("hi", `"temperature":-0.1`), 400, "invalid_request_error", "temperature", "<null>", "temperature"},
		{"top_p zero", "POST", chat, chatBody("hi", `"top_p":0`), 400, "invalid_request_error", "top_p", "<null>", "top_p"},
		{"top_p high", "POST", chat, chatBody("hi", `"top_p":1.01`), 400, "invalid_request_error", "top_p", "<null>", "top_p"},
		{"top_k negative", "POST", chat, chatBody("hi", `"top_k":-1`), 400, "invalid_request_error", "top_k", "<null>", "top_k"},
		{"max_tokens zero", "POST", chat, chatBody("hi", `"max_tokens":0`), 400, "invalid_request_error", "max_tokens", "<null>", "at least 1"},
		{"max_completion_tokens negative", "POST", chat, chatBody("hi", `"max_completion_tokens":-3`), 400, "invalid_request_error", "max_completion_tokens", "<null>", "at least 1"},
		{"n too many", "POST", chat, chatBody("hi", `"n":17`), 400, "invalid_request_error", "n", "<null>", "between 1 and 16"},
		// Penalties, biases and min_p out of range, naming the field.
		{"presence_penalty", "POST", chat, chatBody("hi", `"presence_penalty":2.5`), 400, "invalid_request_error", "presence_penalty", "<null>", "between -2 and 2"},
		{"frequency_penalty", "POST", text, completionBody("hi", `"frequency_penalty":-3`), 400, "invalid_request_error", "frequency_penalty", "<null>", "frequency_penalty"},
		{"frequency_penalty NaN-like", "POST", text, completionBody("hi", `"frequency_penalty":"x"`), 400, "invalid_request_error", "frequency_penalty", "<null>", "frequency_penalty"},
		{"repetition_penalty", "POST", chat, chatBody("hi", `"repetition_penalty":0`), 400, "invalid_request_error", "repetition_penalty", "<null>", "between 0.01 and 10"},
		{"repetition_penalty tiny", "POST", chat, chatBody("hi", `"repetition_penalty":1e-300`), 400, "invalid_request_error", "repetition_penalty", "<null>", "between 0.01 and 10"},
		{"repetition_penalty high", "POST", chat, chatBody("hi", `"repetition_penalty":11`), 400, "invalid_request_error", "repetition_penalty", "<null>", "between 0.01 and 10"},
		{"min_p", "POST", chat, chatBody("hi", `"min_p":1.5`), 400, "invalid_request_error", "min_p", "<null>", "min_p"},
		{"logit_bias outside the vocabulary", "POST", chat, chatBody("hi", `"logit_bias":{"50256":-100}`), 400, "invalid_request_error", "logit_bias", "<null>", "outside the vocabulary"},
		{"logit_bias key", "POST", chat, chatBody("hi", `"logit_bias":{"ab":1}`), 400, "invalid_request_error", "logit_bias", "<null>", "token ids"},
		{"logit_bias value", "POST", chat, chatBody("hi", `"logit_bias":{"5":101}`), 400, "invalid_request_error", "logit_bias", "<null>", "between -100 and 100"},
		{"logit_bias not an object", "POST", chat, chatBody("hi", `"logit_bias":"x"`), 400, "invalid_request_error", "logit_bias", "<null>", "logit_bias"},
		// Parameters not honoured yet: any value but the neutral one is
		// refused, naming the field (they were silently ignored before).
		{"tool_choice required", "POST", chat, chatBody("hi", `"tool_choice":"required"`), 400, "invalid_request_error", "tool_choice", "<null>", "tool_choice"},
		{"tool_choice on completions", "POST", text, completionBody("hi", `"tool_choice":"required"`), 400, "invalid_request_error", "tool_choice", "<null>", "neutral value"},
		{"functions", "POST", chat, chatBody("hi", `"functions":[{"name":"f"}]`), 400, "invalid_request_error", "functions", "<null>", "functions"},
		{"suffix", "POST", text, completionBody("hi", `"suffix":"end"`), 400, "invalid_request_error", "suffix", "<null>", "suffix"},
		{"best_of", "POST", text, completionBody("hi", `"best_of":3`), 400, "invalid_request_error", "best_of", "<null>", "best_of"},
		// Logprobs bounds (logprobs.go).
		{"top_logprobs 21", "POST", chat, chatBody("hi", `"logprobs":true,"top_logprobs":21`), 400, "invalid_request_error", "top_logprobs", "<null>", "between 0 and 20"},
		{"top_logprobs negative", "POST", chat, chatBody("hi", `"logprobs":true,"top_logprobs":-1`), 400, "invalid_request_error", "top_logprobs", "<null>", "between 0 and 20"},
		{"top_logprobs without logprobs", "POST", chat, chatBody("hi", `"top_logprobs":2`), 400, "invalid_request_error", "top_logprobs", "<null>", "needs 'logprobs': true"},
		{"top_logprobs with logprobs false", "POST", chat, chatBody("hi", `"logprobs":false,"top_logprobs":0`), 400, "invalid_request_error", "top_logprobs", "<null>", "needs 'logprobs': true"},
		{"chat logprobs a number", "POST", chat, chatBody("hi", `"logprobs":5`), 400, "invalid_request_error", "logprobs", "<null>", "boolean"},
		{"seventeen stops", "POST", chat, chatBody("hi", `"stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]`), 400, "invalid_request_error", "stop", "<null>", "at most 16"},
		{"stop a number", "POST", chat, chatBody("hi", `"stop":7`), 400, "invalid_request_error", "stop", "<null>", "stop"},
		{"json_schema without actions", "POST", chat, chatBody("hi", `"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{}}}`), 400, "invalid_request_error", "response_format", "<null>", "does not support structured outputs"},
		{"json_object without actions", "POST", chat, chatBody("hi", `"response_format":{"type":"json_object"}`), 400, "invalid_request_error", "response_format", "<null>", "does not support structured outputs"},
		{"json_schema without schema", "POST", chat, chatBody("hi", `"response_format":{"type":"json_schema","json_schema":{"name":"a"}}`), 400, "invalid_request_error", "response_format.json_schema.schema", "<null>", "needs json_schema.schema"},
		{"unknown response_format", "POST", chat, chatBody("hi", `"response_format":{"type":"yaml"}`), 400, "invalid_request_error", "response_format", "<null>", "yaml"},
		{"tools", "POST", chat, chatBody("hi", `"tools":[{"type":"function"}]`), 400, "invalid_request_error", "tools[0].function", "<null>", "tools[0].function"},
		{"completion over context", "POST", chat, chatBody("hi", `"max_tokens":1000`), 400, "invalid_request_error", "max_tokens", "context_length_exceeded", fmt.Sprintf("512 tokens. However, you requested %d tokens (%d in the prompt, 1000 for the completion)", hiLen+1000, hiLen)},
		{"prompt fills context", "POST", chat, chatBody(long, ``), 400, "invalid_request_error", "messages", "context_length_exceeded", fmt.Sprintf("512 tokens, but the prompt has %d", longLen)},
		{"completion prompt missing", "POST", text, `{"model":"` + testModel + `"}`, 400, "invalid_request_error", "prompt", "<null>", "prompt"},
		{"completion prompt array of numbers and strings", "POST", text, `{"model":"` + testModel + `","prompt":[1,"b"]}`, 400, "invalid_request_error", "prompt", "<null>", "token ids"},
		{"completion prompt tokens outside the vocabulary", "POST", text, `{"model":"` + testModel + `","prompt":[1,2,3000]}`, 400, "invalid_request_error", "prompt", "<null>", "outside the vocabulary"},
		{"completion logprobs 21", "POST", text, completionBody("hi", `"logprobs":21`), 400, "invalid_request_error", "logprobs", "<null>", "between 0 and 20"},
		{"completion echo logprobs too many", "POST", text, bigEcho, 400, "invalid_request_error", "logprobs", "<null>", "at most 1048576"},
		{"completion logprobs negative", "POST", text, completionBody("hi", `"logprobs":-1`), 400, "invalid_request_error", "logprobs", "<null>", "between 0 and 20"},
		{"completion echo streamed", "POST", text, completionBody("hi", `"echo":true,"stream":true`), 400, "invalid_request_error", "stream", "<null>", "echo"},
		{"completion max_tokens 0 without echo", "POST", text, completionBody("hi", `"max_tokens":0`), 400, "invalid_request_error", "max_tokens", "<null>", "at least 1"},
		{"completion over context", "POST", text, completionBody("hi", `"max_tokens":510`), 400, "invalid_request_error", "max_tokens", "context_length_exceeded", "513 tokens (3 in the prompt, 510 for the completion)"},
		{"completion unknown model", "POST", text, `{"model":"gpt-4","prompt":"hi"}`, 404, "invalid_request_error", "model", "model_not_found", "gpt-4"},
		{"scheduler refuses", "POST", chat, `{"model":"err-request","messages":[{"role":"user","content":"hi"}],"max_tokens":1}`, 400, "invalid_request_error", "prompt", "<null>", "bad token"},
		{"scheduler closed", "POST", chat, `{"model":"err-closed","messages":[{"role":"user","content":"hi"}],"max_tokens":1}`, 503, "server_error", "<null>", "shutting_down", "shutting down"},
		{"internal error", "POST", text, `{"model":"err-other","prompt":"hi","max_tokens":1}`, 500, "server_error", "<null>", "<null>", "server had an error"},
		{"panic in handler", "POST", chat, `{"model":"panics","messages":[{"role":"user","content":"hi"}]}`, 500, "server_error", "<null>", "<null>", "server had an error"},
		{"unknown route", "GET", "/v1/nothing", ``, 404, "invalid_request_error", "<null>", "unknown_url", "/v1/nothing"},
		{"unknown route post", "POST", "/v2/chat", `{}`, 404, "invalid_request_error", "<null>", "unknown_url", "/v2/chat"},
		{"wrong method", "GET", chat, ``, 405, "invalid_request_error", "<null>", "method_not_allowed", ""},
		{"wrong method on models", "POST", "/v1/models", `{}`, 405, "invalid_request_error", "<null>", "method_not_allowed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := e.do(t, tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("content type = %q", ct)
			}
			got := decodeErr(t, body).Error
			if got.Type != tt.typ || deref(got.Param) != tt.param || deref(got.Code) != tt.code {
				t.Errorf("type/param/code = %s/%s/%s, want %s/%s/%s", got.Type, deref(got.Param), deref(got.Code), tt.typ, tt.param, tt.code)
			}
			if !strings.Contains(got.Message, tt.msg) {
				t.Errorf("message %q lacks %q", got.Message, tt.msg)
			}
		})
	}
	t.Cleanup(func() {
		// After all of the above, the server still serves.
		resp, body := e.do(t, http.MethodPost, chat, chatBody("hi", `"max_tokens":3`))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("good request after bad ones: %d %s", resp.StatusCode, body)
		}
	})
}

func TestRequestLog(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	e := newEnv(t, envOptions{logger: zap.New(core)})
	if resp, body := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("hi", `"max_tokens":1`)); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	e.do(t, http.MethodGet, "/nope", "")
	entries := logs.FilterMessage("request").AllUntimed()
	if len(entries) != 2 {
		t.Fatalf("%d request entries, want 2", len(entries))
	}
	want := []struct {
		method, path string
		status       int64
	}{{"POST", "/v1/chat/completions", 200}, {"GET", "/nope", 404}}
	for i, w := range want {
		fields := entries[i].ContextMap()
		if entries[i].Level != zap.DebugLevel || fields["method"] != w.method || fields["path"] != w.path || fields["status"] != w.status {
			t.Errorf("entry %d = %v %v, want %+v", i, entries[i].Level, fields, w)
		}
		if _, ok := fields["duration"]; !ok {
			t.Errorf("entry %d has no duration", i)
		}
	}
}
