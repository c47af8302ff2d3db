package main

import (
	"context"
	"testing"

	"github.com/ollama/ollama/api"
)

// Logprobs through Ollama's own Go client on the real engine: /api/chat
// streamed and not gives, token for token, the logprobs /v1/chat gives the
// same greedy request (same values: the model's log-softmax), with
// top_logprobs sorted; without logprobs no reply carries any.
func TestOllamaLogprobsOnRealEngine(t *testing.T) {
	ts := startServer(t, testConfig())
	c := ollamaOn(t, ts)
	const n = 6
	code, _, out := post(t, ts.URL+"/v1/chat/completions", map[string]any{"model": ts.modelID(), "messages": []map[string]any{{"role": "user", "content": "hi there"}},
		"temperature": 0, "max_tokens": n, "logprobs": true, "top_logprobs": 3})
	if code != 200 {
		t.Fatalf("/v1: %d %v", code, out)
	}
	want := out["choices"].([]any)[0].(map[string]any)["logprobs"].(map[string]any)["content"].([]any)
	for _, stream := range []bool{false, true} {
		var got []api.Logprob
		err := c.Chat(context.Background(), &api.ChatRequest{Model: ts.modelID(), Messages: []api.Message{{Role: "user", Content: "hi there"}},
			Stream: &stream, Logprobs: true, TopLogprobs: 3, Options: map[string]any{"temperature": 0, "num_predict": n}},
			func(r api.ChatResponse) error { got = append(got, r.Logprobs...); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("stream %v: %d logprobs, /v1 gave %d", stream, len(got), len(want))
		}
		for i, g := range got {
			w := want[i].(map[string]any)
			if g.Token != w["token"] || float32(g.Logprob) != float32(w["logprob"].(float64)) || len(g.TopLogprobs) != 3 {
				t.Fatalf("stream %v token %d: %+v, /v1 %v", stream, i, g, w)
			}
			for k := 1; k < len(g.TopLogprobs); k++ {
				if g.TopLogprobs[k].Logprob > g.TopLogprobs[k-1].Logprob {
					t.Fatalf("top_logprobs not sorted: %+v", g.TopLogprobs)
				}
			}
		}
	}
	_, last := ollamaGen(t, c, &api.GenerateRequest{Model: ts.modelID(), Prompt: "hi", Options: map[string]any{"num_predict": 3}})
	if last.Logprobs != nil {
		t.Fatalf("logprobs without asking: %+v", last.Logprobs)
	}
}
