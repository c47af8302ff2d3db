package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/server"
)

// Fuzz targets for every JSON endpoint: the request decoder, the
// validators, prompt rendering, schema compiling and a generation through
// the real scheduler (on the fake engine: fuzzing needs thousands of
// requests a second). The property: an answer in the API's shape with an
// expected status, never a 5xx, and a structured output that parses.
// Seed corpora: testdata/fuzz/<target>/. make fuzz runs each for FUZZTIME.

// fuzzEnv is one server per fuzz target.
func fuzzEnv(f *testing.F) *env {
	return newEnv(f, envOptions{
		slots: 4, queue: 64, ctxLen: sessionCtx, logger: zap.NewNop(), actions: fakeActions(f),
		cfg: server.Config{RequestTimeout: 10 * time.Second, BodyLimit: 1 << 20},
	})
}

// expectedStatus are the statuses a request of any content may get from a
// server that is not loaded or draining.
var expectedStatus = map[int]bool{200: true, 400: true, 404: true, 409: true, 413: true, 415: true}

// checkAnswer is the property every endpoint keeps.
func checkAnswer(t *testing.T, req []byte, resp *http.Response, body []byte) {
	t.Helper()
	if !expectedStatus[resp.StatusCode] {
		t.Fatalf("status %d for %q: %s", resp.StatusCode, req, body)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return // streams end with an error event or [DONE]: stream tests
	}
	if resp.StatusCode != 200 {
		decodeErr(t, body)
		return
	}
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("200 body is not JSON: %v: %s", err, body)
	}
	var r struct {
		Stream         bool `json:"stream"`
		ResponseFormat *struct {
			Type string `json:"type"`
		} `json:"response_format"`
	}
	if json.Unmarshal(req, &r) == nil && r.ResponseFormat != nil && r.ResponseFormat.Type != "text" && len(out.Choices) == 1 {
		if c := out.Choices[0].Message.Content; !json.Valid([]byte(c)) {
			t.Fatalf("structured output %q does not parse (request %q)", c, req)
		}
	}
}

func fuzzPost(f *testing.F, path string, seeds ...string) {
	e := fuzzEnv(f)
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, b := e.do(t, http.MethodPost, path, string(body))
		checkAnswer(t, body, resp, b)
	})
}

func FuzzChatCompletions(f *testing.F) {
	fuzzPost(f, "/v1/chat/completions",
		chatBody("hi", `"max_tokens":4`),
		chatBody("x <|eot_id|> y", `"max_tokens":3,"stop":["y","<|"]`),
		chatBody("json", `"max_tokens":30,"response_format":{"type":"json_object"}`),
		chatBody("s", `"max_tokens":40,"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object","properties":{"a":{"type":"array","maxItems":3,"items":{"enum":[1,"x",null]}}}}}}}`),
		`{"model":"`+testModel+`","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"max_completion_tokens":2,"stream":true}`,
		`{"model":"`+testModel+`","messages":[{"role":"system"},{"role":"assistant","content":null}],"n":1,"top_p":0.5,"seed":-3}`,
	)
}

func FuzzCompletions(f *testing.F) {
	fuzzPost(f, "/v1/completions",
		completionBody("hello", `"max_tokens":3`),
		completionBody("<|eot_id|><|eot_id|>", `"max_tokens":1,"echo":false`),
		`{"model":"`+testModel+`","prompt":["one"],"max_tokens":9223372036854775807}`,
		`{"model":"`+testModel+`","prompt":["one",[116,101],"three"],"max_tokens":3,"stop":["a","b","c","d","e","f"]}`,
		`{"model":"`+testModel+`","prompt":[94,116,299],"max_tokens":2,"presence_penalty":0,"best_of":1}`,
	)
}

// FuzzTokenizer posts each input to /tokenize and to /detokenize.
func FuzzTokenizer(f *testing.F) {
	e := fuzzEnv(f)
	for _, s := range []string{
		`{"model":"` + testModel + `","content":"hi <|eot_id|>","with_pieces":true,"add_special":true}`,
		`{"model":"` + testModel + `","prompt":"a\u00e9","return_token_strs":true}`,
		`{"model":"` + testModel + `","messages":[{"role":"user","content":"x"}]}`,
		`{"model":"` + testModel + `","tokens":[97,195,169]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/tokenize", "/detokenize"} {
			resp, b := e.do(t, http.MethodPost, path, string(body))
			checkAnswer(t, body, resp, b)
		}
	})
}

func FuzzNextAction(f *testing.F) {
	fuzzPost(f, "/v1/actions/next",
		`{"model":"`+testModel+`","page":"<a name=\"buy\">Buy</a><input name=\"q\"/>","max_tokens":120}`,
		`{"model":"`+testModel+`","page":"<a name=\"x\">x</a>","format":"finetuned","history":[{"page":"<b>","action":{"type":"click","name":"x"},"rationale":"r"}],"persona":"p","temperature":0.7,"seed":3}`,
		`{"model":"`+testModel+`","page":"","history":[{"action":{"type":"type_and_submit","name":"q"}}]}`,
	)
}

// FuzzSessions creates a session from one input and steps it with
// another.
func FuzzSessions(f *testing.F) {
	e := fuzzEnv(f)
	f.Add([]byte(`{"model":"`+testModel+`","persona":"p","format":"finetuned"}`), []byte(`{"page":"<a name=\"go\">Go</a>","max_tokens":100}`))
	f.Add([]byte(`{"model":"`+testModel+`"}`), []byte(`{"page":"<input name=\"q\"/>","temperature":1.5,"seed":9}`))
	f.Fuzz(func(t *testing.T, create, step []byte) {
		resp, b := e.do(t, http.MethodPost, "/v1/sessions", string(create))
		checkAnswer(t, create, resp, b)
		var s struct {
			ID string `json:"id"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(b, &s) != nil || s.ID == "" {
			return
		}
		resp, b = e.do(t, http.MethodPost, "/v1/sessions/"+s.ID+"/steps", string(step))
		checkAnswer(t, step, resp, b)
		resp, b = e.do(t, http.MethodDelete, "/v1/sessions/"+s.ID, "")
		checkAnswer(t, nil, resp, b)
	})
}
