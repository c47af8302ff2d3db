package main

import (
	"net/http"
	"strings"
	"testing"
)

// Every bad input gets its status and an OpenAI-shaped error, and the server
// keeps serving afterwards. (The server package covers more cases against a
// fake engine; these go through the real tokenizer and engine.)
func TestBadInputsThenStillServes(t *testing.T) {
	c := testConfig()
	c.BodyLimit = 64 << 10
	ts := startServer(t, c)
	url := ts.URL + "/v1/chat/completions"
	id := ts.modelID()
	cases := []struct {
		name   string
		body   any
		status int
		param  string
	}{
		{"malformed json", `{"model":`, 400, ""},
		{"unknown model", chatReq("no-such-model", "hi", nil), 404, "model"},
		{"missing messages", map[string]any{"model": id}, 400, "messages"},
		{"empty messages", map[string]any{"model": id, "messages": []any{}}, 400, "messages"},
		{"over context", chatReq(id, strings.Repeat("word ", 300), map[string]any{"max_tokens": 1000}), 400, ""},
		{"prompt alone over context", chatReq(id, strings.Repeat("zq ", 2000), map[string]any{"max_tokens": nil}), 400, ""},
		{"body over limit", chatReq(id, strings.Repeat("x", 70<<10), nil), 413, ""},
		{"bad temperature", chatReq(id, "hi", map[string]any{"temperature": 5}), 400, "temperature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, out := post(t, url, tc.body)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %v", code, tc.status, out)
			}
			e, ok := out["error"].(map[string]any)
			if !ok {
				t.Fatalf("no error object: %v", out)
			}
			if msg, _ := e["message"].(string); msg == "" {
				t.Fatalf("empty message: %v", e)
			}
			if _, ok := e["type"].(string); !ok {
				t.Fatalf("no type: %v", e)
			}
			for _, k := range []string{"param", "code"} {
				if _, present := e[k]; !present {
					t.Fatalf("error lacks %q: %v", k, e)
				}
			}
			if tc.param != "" && e["param"] != tc.param {
				t.Fatalf("param %v, want %s", e["param"], tc.param)
			}
		})
	}
	code, _, out := post(t, url, chatReq(id, "still there?", nil))
	if code != 200 {
		t.Fatalf("after bad inputs: %d %v", code, out)
	}
	resp, err := http.Get(ts.URL + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
}
