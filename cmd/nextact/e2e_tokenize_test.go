package main

import (
	"encoding/json"
	"fmt"
	"testing"
)

// The tokenizer endpoints and token-id and list prompts on the real engine:
// /tokenize and /detokenize round-trip, a prompt sent as the ids /tokenize
// gave gets the same greedy answer as the text, and each prompt of a list
// gets the answer it gets alone.
func TestTokenizerAndPromptFormsOnRealEngine(t *testing.T) {
	ts := startServer(t, testConfig())
	const text = "Hello world, 媽 and 🤗"
	// llama-server's shape, no model field (one model is served).
	code, _, out := post(t, ts.URL+"/tokenize", `{"content":`+quote(text)+`,"add_special":true,"with_pieces":true}`)
	if code != 200 {
		t.Fatalf("tokenize: %d %v", code, out)
	}
	var ids []int
	var joined []byte
	for _, x := range out["tokens"].([]any) {
		tok := x.(map[string]any)
		ids = append(ids, int(tok["id"].(float64)))
		switch p := tok["piece"].(type) {
		case string:
			joined = append(joined, p...)
		case []any:
			for _, b := range p {
				joined = append(joined, byte(b.(float64)))
			}
		}
	}
	bos := ts.stack.model.BOS // add_special: the model's BOS, if it adds one
	if len(bos) > 0 && ids[0] != int(bos[0]) || string(joined) != string(joinPieces(t, ts, bos))+text {
		t.Fatalf("tokens %v, pieces %q", ids, joined)
	}
	// vLLM's shape.
	code, _, out = post(t, ts.URL+"/detokenize", map[string]any{"model": ts.modelID(), "tokens": ids[len(bos):]})
	if code != 200 || out["prompt"] != text || out["content"] != text {
		t.Fatalf("detokenize: %d %v", code, out)
	}
	complete := func(prompt any) []string {
		t.Helper()
		code, _, out := post(t, ts.URL+"/v1/completions", map[string]any{"model": ts.modelID(), "prompt": prompt, "max_tokens": 12, "temperature": 0})
		if code != 200 {
			t.Fatalf("completions %v: %d %v", prompt, code, out)
		}
		var texts []string
		for i, c := range out["choices"].([]any) {
			ch := c.(map[string]any)
			if int(ch["index"].(float64)) != i {
				t.Fatalf("choice %d has index %v", i, ch["index"])
			}
			texts = append(texts, ch["text"].(string))
		}
		return texts
	}
	alone := complete(text)
	if got := complete(ids); fmt.Sprint(got) != fmt.Sprint(alone) {
		t.Fatalf("token-id prompt: %q, text prompt: %q", got, alone)
	}
	other := complete("Good bye")
	if got := complete([]any{text, "Good bye", ids}); fmt.Sprint(got) != fmt.Sprint([]string{alone[0], other[0], alone[0]}) {
		t.Fatalf("list of prompts: %q, alone: %q and %q", got, alone, other)
	}
}

// joinPieces is the text of the given tokens, as /detokenize gives it.
func joinPieces(t *testing.T, ts *testServer, ids []int32) string {
	if len(ids) == 0 {
		return ""
	}
	code, _, out := post(t, ts.URL+"/detokenize", map[string]any{"tokens": ids})
	if code != 200 {
		t.Fatalf("detokenize: %d %v", code, out)
	}
	return out["content"].(string)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
