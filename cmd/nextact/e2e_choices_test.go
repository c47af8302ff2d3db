package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// n above 1 on the real engine: the choices come back indexed, choice j is
// what a single request with seed+j answers (a forked sequence continues
// from a copy of the prompt's KV exactly as if it had computed it), the
// prompt is computed once (the other choices' prompt tokens come from the
// KV copy: the cached-token counter grows by them), the usage counts the
// prompt once, and a list of prompts with n gives prompt-major indexes.
func TestChoicesOnRealEngine(t *testing.T) {
	ts := startServer(t, testConfig())
	msgs := []map[string]any{{"role": "user", "content": "A shopper opens the store page, looks at three shirts and two pairs of shoes, and then"}}
	chat := func(extra map[string]any) map[string]any {
		t.Helper()
		body := map[string]any{"model": ts.modelID(), "messages": msgs, "max_tokens": 10, "temperature": 1.0, "seed": 5}
		for k, v := range extra {
			body[k] = v
		}
		code, _, out := post(t, ts.URL+"/v1/chat/completions", body)
		if code != 200 {
			t.Fatalf("chat %v: %d %v", extra, code, out)
		}
		return out
	}
	cachedBefore := sum(scrape(t, ts.URL), "nextact_cached_prompt_tokens_total")
	many := chat(map[string]any{"n": 3})
	cached := sum(scrape(t, ts.URL), "nextact_cached_prompt_tokens_total") - cachedBefore
	choices := many["choices"].([]any)
	if len(choices) != 3 {
		t.Fatalf("%d choices: %v", len(choices), many)
	}
	usage := many["usage"].(map[string]any)
	promptTokens := usage["prompt_tokens"].(float64)
	// Each fork copies all but the last prompt token (fed for its logits).
	if want := 2 * (promptTokens - 1); cached < want {
		t.Fatalf("cached prompt tokens grew by %g, want at least %g (prompt %g): the forks computed the prompt", cached, want, promptTokens)
	}
	var completion float64
	for j, c := range choices {
		ch := c.(map[string]any)
		if int(ch["index"].(float64)) != j {
			t.Fatalf("choice %d has index %v", j, ch["index"])
		}
		got := ch["message"].(map[string]any)["content"]
		alone := chat(map[string]any{"seed": 5 + j})
		if want := alone["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"]; got != want {
			t.Fatalf("choice %d: %q, alone with seed %d: %q", j, got, 5+j, want)
		}
		if alone["usage"].(map[string]any)["prompt_tokens"].(float64) != promptTokens {
			t.Fatalf("usage counts the prompt more than once: %v", usage)
		}
		completion += alone["usage"].(map[string]any)["completion_tokens"].(float64)
	}
	if usage["completion_tokens"].(float64) != completion {
		t.Fatalf("completion tokens %v, the choices' sum %g", usage["completion_tokens"], completion)
	}

	code, _, out := post(t, ts.URL+"/v1/completions", map[string]any{"model": ts.modelID(), "prompt": []string{"Once upon a time", "The cart holds"}, "n": 2, "max_tokens": 6, "temperature": 0})
	if code != 200 {
		t.Fatalf("completions: %d %v", code, out)
	}
	var texts []string
	for i, c := range out["choices"].([]any) {
		ch := c.(map[string]any)
		if int(ch["index"].(float64)) != i {
			t.Fatalf("choice %d has index %v", i, ch["index"])
		}
		texts = append(texts, ch["text"].(string))
	}
	if len(texts) != 4 || texts[0] != texts[1] || texts[2] != texts[3] {
		t.Fatalf("greedy choices of two prompts, n 2: %q", texts)
	}
	// Streamed, each choice's events carry its index and add up to the
	// choice the whole answer gives; each ends with its finish reason, and
	// the usage event counts the prompt once.
	for _, kind := range []string{"chat", "text"} {
		url, body := ts.URL+"/v1/chat/completions", map[string]any{"model": ts.modelID(), "messages": msgs, "max_tokens": 10, "temperature": 1.0, "seed": 5, "n": 3, "logprobs": true}
		if kind == "text" {
			url, body = ts.URL+"/v1/completions", map[string]any{"model": ts.modelID(), "prompt": "A shopper opens the store page, looks at three shirts and two pairs of shoes, and then", "max_tokens": 10, "temperature": 1.0, "seed": 5, "n": 3, "logprobs": 1}
		}
		code, _, whole := post(t, url, body)
		if code != 200 {
			t.Fatalf("%s: %d %v", kind, code, whole)
		}
		body["stream"], body["stream_options"] = true, map[string]any{"include_usage": true}
		raw, _ := json.Marshal(body)
		resp, err := http.Post(url, "application/json", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		events, done := sseEvents(t, resp.Body)
		resp.Body.Close()
		texts, finished, tokens := make([]string, 3), make([]string, 3), make([]int, 3)
		var streamUsage map[string]any
		for _, ev := range events {
			if u, ok := ev["usage"].(map[string]any); ok {
				streamUsage = u
			}
			for _, c := range ev["choices"].([]any) {
				ch := c.(map[string]any)
				j := int(ch["index"].(float64))
				if kind == "chat" {
					d := ch["delta"].(map[string]any)
					texts[j] += fmt.Sprint(d["content"])
					if d["content"] == nil {
						texts[j] = strings.TrimSuffix(texts[j], "<nil>")
					}
				} else {
					texts[j] += ch["text"].(string)
				}
				if r, ok := ch["finish_reason"].(string); ok {
					finished[j] = r
				}
				if lp, ok := ch["logprobs"].(map[string]any); ok {
					if content, ok := lp["content"].([]any); ok {
						tokens[j] += len(content)
					} else if toks, ok := lp["tokens"].([]any); ok {
						tokens[j] += len(toks)
					}
				}
			}
		}
		for j, c := range whole["choices"].([]any) {
			ch := c.(map[string]any)
			want, _ := ch["text"].(string)
			if kind == "chat" {
				want = ch["message"].(map[string]any)["content"].(string)
			}
			if texts[j] != want || finished[j] != ch["finish_reason"] || tokens[j] == 0 {
				t.Fatalf("%s stream choice %d: %q (%s, %d tokens), whole %q (%v)", kind, j, texts[j], finished[j], tokens[j], want, ch["finish_reason"])
			}
		}
		wu := whole["usage"].(map[string]any)
		if !done || streamUsage == nil || streamUsage["prompt_tokens"] != wu["prompt_tokens"] || streamUsage["completion_tokens"] != wu["completion_tokens"] {
			t.Fatalf("%s stream: done %v, usage %v, whole %v", kind, done, streamUsage, wu)
		}
	}

	// Logprobs and echo reach every choice.
	code, _, out = post(t, ts.URL+"/v1/completions", map[string]any{"model": ts.modelID(), "prompt": []string{"Once upon a time", "The cart"}, "n": 2, "max_tokens": 3, "temperature": 0, "echo": true, "logprobs": 1})
	if code != 200 {
		t.Fatalf("completions: %d %v", code, out)
	}
	for i, c := range out["choices"].([]any) {
		ch := c.(map[string]any)
		prompt := []string{"Once upon a time", "The cart"}[i/2]
		lp, _ := ch["logprobs"].(map[string]any)
		toks, _ := lp["tokens"].([]any)
		if !strings.HasPrefix(ch["text"].(string), prompt) || len(toks) < 4 {
			t.Fatalf("choice %d: %v", i, ch)
		}
	}
	code, _, out = post(t, ts.URL+"/v1/chat/completions", map[string]any{"model": ts.modelID(), "messages": msgs, "n": 2, "max_tokens": 3, "logprobs": true, "top_logprobs": 2})
	if code != 200 {
		t.Fatalf("chat: %d %v", code, out)
	}
	for i, c := range out["choices"].([]any) {
		lp, _ := c.(map[string]any)["logprobs"].(map[string]any)
		if content, _ := lp["content"].([]any); len(content) == 0 {
			t.Fatalf("chat choice %d has no logprobs: %v", i, c)
		}
	}
	for _, c := range []struct {
		body map[string]any
		msg  string
	}{
		{map[string]any{"n": 0}, "between 1 and 16"},
		{map[string]any{"n": 17}, "between 1 and 16"},
	} {
		body := map[string]any{"model": ts.modelID(), "messages": msgs, "max_tokens": 2}
		for k, v := range c.body {
			body[k] = v
		}
		code, _, out := post(t, ts.URL+"/v1/chat/completions", body)
		e, _ := out["error"].(map[string]any)
		if code != 400 || e["param"] != "n" || !strings.Contains(fmt.Sprint(e["message"]), c.msg) {
			t.Fatalf("%v: %d %v", c.body, code, out)
		}
	}
}

// Logprobs with tools: a forced call's tokens come with their logprobs;
// streamed with tools they are a 400 naming logprobs, and so is n above 1
// (naming n), never ignored.
func TestToolsWithLogprobsOnRealEngine(t *testing.T) {
	ts := startServer(t, testConfig())
	tool := map[string]any{"type": "function", "function": map[string]any{"name": "add_to_cart", "parameters": map[string]any{
		"type": "object", "properties": map[string]any{"sku": map[string]any{"type": "string", "maxLength": 8}}, "required": []string{"sku"}}}}
	body := func(extra map[string]any) map[string]any {
		b := map[string]any{"model": ts.modelID(), "messages": []map[string]any{{"role": "user", "content": "Add the shirt."}},
			"tools": []any{tool}, "tool_choice": "required", "max_tokens": 64, "logprobs": true, "top_logprobs": 2}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	code, _, out := post(t, ts.URL+"/v1/chat/completions", body(nil))
	if code != 200 {
		t.Fatalf("%d %v", code, out)
	}
	ch := out["choices"].([]any)[0].(map[string]any)
	lp, _ := ch["logprobs"].(map[string]any)
	content, _ := lp["content"].([]any)
	if ch["finish_reason"] != "tool_calls" || len(content) == 0 {
		t.Fatalf("forced call with logprobs: %v", ch)
	}
	for _, c := range []struct {
		extra map[string]any
		param string
	}{{map[string]any{"stream": true}, "logprobs"}, {map[string]any{"n": 2}, "n"}} {
		code, _, out := post(t, ts.URL+"/v1/chat/completions", body(c.extra))
		e, _ := out["error"].(map[string]any)
		if code != 400 || e["param"] != c.param {
			t.Fatalf("%v: %d %v", c.extra, code, out)
		}
	}
}
