package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// Fuzz targets of the Ollama API's generation endpoints, as fuzz_test.go's
// for /v1: any body gets an expected status in Ollama's shape, never a 5xx;
// a stream is NDJSON whose last line is done or an error; a format's
// output parses.

func fuzzOllama(f *testing.F, path string, seeds ...string) {
	e := fuzzEnv(f)
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		resp, b := e.do(t, http.MethodPost, path, string(body))
		checkOllamaAnswer(t, body, resp, b)
	})
}

// checkOllamaAnswer is the property both endpoints keep.
func checkOllamaAnswer(t *testing.T, req []byte, resp *http.Response, body []byte) {
	t.Helper()
	if !expectedStatus[resp.StatusCode] {
		t.Fatalf("status %d for %q: %s", resp.StatusCode, req, body)
	}
	if resp.StatusCode != 200 {
		ollamaError(t, body)
		return
	}
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	var text bytes.Buffer
	var last map[string]any
	for i, line := range lines {
		var m struct {
			Response *string `json:"response"`
			Message  *struct {
				Content string `json:"content"`
			} `json:"message"`
		}
		if err := json.Unmarshal(line, &m); err != nil || json.Unmarshal(line, &last) != nil {
			t.Fatalf("line %d of %q is not a JSON object: %v (request %q)", i, body, err, req)
		}
		switch {
		case m.Response != nil:
			text.WriteString(*m.Response)
		case m.Message != nil:
			text.WriteString(m.Message.Content)
		}
	}
	if last["done"] != true && last["error"] == nil {
		t.Fatalf("the answer ends neither done nor with an error: %q (request %q)", body, req)
	}
	var r struct {
		Format json.RawMessage `json:"format"`
	}
	if json.Unmarshal(req, &r) == nil && len(r.Format) > 0 && (r.Format[0] == '{' || string(r.Format) == `"json"`) &&
		last["done"] == true && last["done_reason"] != "load" && last["done_reason"] != "unload" && !json.Valid(text.Bytes()) {
		t.Fatalf("structured output %q does not parse (request %q)", text.Bytes(), req)
	}
}

func FuzzOllamaChat(f *testing.F) {
	fuzzOllama(f, "/api/chat",
		`{"model":"test-llama","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":4}}`,
		`{"model":"test-llama","messages":[{"role":"system","content":"s"},{"role":"user","content":"x <|eot_id|>"}],"stream":false,"options":{"temperature":0,"stop":["y"],"num_predict":3}}`,
		`{"model":"test-llama","messages":[{"role":"user","content":"j"}],"format":"json","options":{"num_predict":30,"seed":1}}`,
		`{"model":"test-llama","messages":[{"role":"user","content":"s"}],"stream":false,"format":{"type":"object","properties":{"a":{"enum":[1,"x"]}}},"options":{"num_predict":40}}`,
		`{"model":"test-llama","messages":[],"keep_alive":0}`,
	)
}

func FuzzOllamaGenerate(f *testing.F) {
	fuzzOllama(f, "/api/generate",
		`{"model":"test-llama","prompt":"hello","options":{"num_predict":3,"top_k":5,"top_p":0.5}}`,
		`{"model":"test-llama","prompt":"<|eot_id|>","raw":true,"stream":false,"options":{"num_predict":-2,"num_ctx":64}}`,
		`{"model":"test-llama","prompt":"p","system":"s","keep_alive":"5m","options":{"num_predict":1e15}}`,
		`{"model":"test-llama","prompt":"j","format":"json","stream":false,"options":{"num_predict":20}}`,
	)
}
