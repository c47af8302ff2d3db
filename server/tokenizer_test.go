package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/nextact/nextact/server"
)

// byteIDs is what the test tokenizer makes of s: one token per byte.
func byteIDs(s string) []int32 {
	out := make([]int32, len(s))
	for i := range len(s) {
		out[i] = int32(s[i])
	}
	return out
}

func TestTokenize(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	bos := []int32{'^'}
	for _, tc := range []struct {
		name, body string
		want       []int32
	}{
		{"llama-server content, no BOS by default", `{"model":"` + testModel + `","content":"hi"}`, byteIDs("hi")},
		{"content with add_special", `{"model":"` + testModel + `","content":"hi","add_special":true}`, append(bos, byteIDs("hi")...)},
		{"vLLM prompt, BOS by default", `{"model":"` + testModel + `","prompt":"hi"}`, append(bos, byteIDs("hi")...)},
		{"prompt without special tokens", `{"model":"` + testModel + `","prompt":"hi","add_special_tokens":false}`, byteIDs("hi")},
		{"messages rendered as a chat request", `{"model":"` + testModel + `","messages":[{"role":"user","content":"hi"}]}`, byteIDs(llama3Prompt("hi"))},
		{"empty content", `{"model":"` + testModel + `","content":""}`, []int32{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, b := e.do(t, http.MethodPost, "/tokenize", tc.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			var r struct {
				Tokens      []int32 `json:"tokens"`
				Count       int     `json:"count"`
				MaxModelLen int     `json:"max_model_len"`
			}
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("%v: %s", err, b)
			}
			if string(mustMarshal(t, r.Tokens)) != string(mustMarshal(t, tc.want)) || r.Count != len(tc.want) || r.MaxModelLen != testCtx {
				t.Fatalf("got %s, want tokens %v", b, tc.want)
			}
		})
	}
}

func TestTokenizePiecesAndDetokenize(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	resp, b := e.do(t, http.MethodPost, "/tokenize", `{"model":"`+testModel+`","content":"a\u00e9","with_pieces":true,"return_token_strs":true}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	// "é" is two byte tokens here: each piece alone is not UTF-8, so
	// llama-server's shape gives its bytes.
	want := `{"tokens":[{"id":97,"piece":"a"},{"id":195,"piece":[195]},{"id":169,"piece":[169]}],"count":3,"max_model_len":` + itoa(testCtx) + `,"token_strs":["a","\ufffd","\ufffd"]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	resp, b = e.do(t, http.MethodPost, "/detokenize", `{"model":"`+testModel+`","tokens":[97,195,169,104]}`)
	if resp.StatusCode != 200 || string(b) != `{"content":"aéh","prompt":"aéh"}` {
		t.Fatalf("detokenize: %d %s", resp.StatusCode, b)
	}
	resp, b = e.do(t, http.MethodPost, "/detokenize", `{"model":"`+testModel+`","tokens":[]}`)
	if resp.StatusCode != 200 || string(b) != `{"content":"","prompt":""}` {
		t.Fatalf("detokenize nothing: %d %s", resp.StatusCode, b)
	}
	resp, b = e.do(t, http.MethodGet, "/tokenizer_info?model="+testModel, "")
	var info map[string]any
	if err := json.Unmarshal(b, &info); err != nil || resp.StatusCode != 200 || info["vocab_size"] != float64(300) || info["model_max_length"] != float64(testCtx) ||
		info["bos_token"] != "^" || info["chat_format"] != "llama3" {
		t.Fatalf("tokenizer_info: %d %s", resp.StatusCode, b)
	}
}

func TestTokenizerEndpointErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		param                    string
	}{
		{"nothing to tokenize", "POST", "/tokenize", `{"model":"` + testModel + `"}`, 400, "content"},
		{"content and messages", "POST", "/tokenize", `{"model":"` + testModel + `","content":"a","messages":[{"role":"user","content":"x"}]}`, 400, "content"},
		{"bad role", "POST", "/tokenize", `{"model":"` + testModel + `","messages":[{"role":"robot","content":"x"}]}`, 400, "messages[0].role"},
		{"no generation prompt", "POST", "/tokenize", `{"model":"` + testModel + `","messages":[{"role":"user","content":"x"}],"add_generation_prompt":false}`, 400, "add_generation_prompt"},
		{"two models, none named", "POST", "/tokenize", `{"content":"a"}`, 400, "model"},
		{"unknown model", "POST", "/tokenize", `{"model":"nope","content":"a"}`, 404, "model"},
		{"malformed", "POST", "/tokenize", `{"content":`, 400, ""},
		{"id past the vocabulary", "POST", "/detokenize", `{"model":"` + testModel + `","tokens":[1,300]}`, 400, "tokens"},
		{"ids not numbers", "POST", "/detokenize", `{"model":"` + testModel + `","tokens":["a"]}`, 400, "tokens"},
		{"info of an unknown model", "GET", "/tokenizer_info?model=nope", ``, 404, "model"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, b := e.do(t, tc.method, tc.path, tc.body)
			var ae apiErr
			if resp.StatusCode != tc.status || json.Unmarshal(b, &ae) != nil || ae.Error == nil {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.param != "" && (ae.Error.Param == nil || *ae.Error.Param != tc.param) {
				t.Fatalf("param %v, want %s: %s", ae.Error.Param, tc.param, b)
			}
		})
	}
	// The same API keys as /v1.
	keyed := newEnv(t, envOptions{cfg: server.Config{APIKeys: testKeys}})
	for _, p := range []struct{ method, path, body string }{{"POST", "/tokenize", `{"content":"a"}`}, {"POST", "/detokenize", `{"tokens":[1]}`}, {"GET", "/tokenizer_info", ``}} {
		if resp, b := keyed.do(t, p.method, p.path, p.body); resp.StatusCode != 401 || !strings.Contains(string(b), "invalid_api_key") {
			t.Fatalf("%s without a key: %d %s", p.path, resp.StatusCode, b)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
