package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func chatReq(model, content string, extra map[string]any) map[string]any {
	r := map[string]any{
		"model":       model,
		"messages":    []map[string]any{{"role": "user", "content": content}},
		"temperature": 0,
		"max_tokens":  24,
	}
	for k, v := range extra {
		r[k] = v
	}
	return r
}

// The Done-when check of the engine issue: /v1/models gives the id, and a
// chat completion with nothing but model and messages answers.
func TestDefaultModelAnswersHi(t *testing.T) {
	ts := startServer(t, testConfig())
	resp, err := http.Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"id":"nextact-tiny"`) {
		t.Fatalf("models: %d %s", resp.StatusCode, body)
	}
	code, _, out := post(t, ts.URL+"/v1/chat/completions", map[string]any{
		"model": "nextact-tiny", "messages": []map[string]any{{"role": "user", "content": "hi"}},
	})
	if code != 200 {
		t.Fatalf("status %d: %v", code, out)
	}
	text, finish := chatText(t, out)
	usage := out["usage"].(map[string]any)
	if finish != "stop" && finish != "length" {
		t.Fatalf("finish_reason %q", finish)
	}
	if usage["completion_tokens"].(float64) < 1 || usage["total_tokens"].(float64) != usage["prompt_tokens"].(float64)+usage["completion_tokens"].(float64) {
		t.Fatalf("usage %v for %q", usage, text)
	}
}

// Greedy output of 8 concurrent HTTP requests equals each request run
// alone: identical and different prompts mixed, some joining mid-decode.
func TestConcurrentGreedyEqualsAlone(t *testing.T) {
	ts := startServer(t, testConfig())
	prompts := []string{
		"hi", "What does the shopper click next?", "hi",
		`<div name="product_list"><a name="columbia_shirt.view_product">Columbia Shirt</a></div>`,
		"hi", "Add the blue jacket to the cart", "checkout", strings.Repeat("a long page ", 40),
	}
	url := ts.URL + "/v1/chat/completions"
	get := func(p string) string {
		code, _, out := post(t, url, chatReq(ts.modelID(), p, nil))
		if code != 200 {
			t.Errorf("status %d: %v", code, out)
			return ""
		}
		text, finish := chatText(t, out)
		return fmt.Sprintf("%q/%s/%v", text, finish, tokenCounts(out["usage"]))
	}
	alone := make([]string, len(prompts))
	for i, p := range prompts {
		alone[i] = get(p)
	}
	together := make([]string, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 1 {
				time.Sleep(time.Duration(i) * 10 * time.Millisecond) // join mid-decode
			}
			together[i] = get(p)
		}()
	}
	wg.Wait()
	for i := range prompts {
		if together[i] != alone[i] {
			t.Errorf("prompt %d: concurrent %s, alone %s", i, together[i], alone[i])
		}
	}
}

// Streamed chunks concatenate to the non-streamed text, [DONE] ends the
// stream, and the usage chunk matches the non-streamed usage.
func TestStreamMatchesNonStream(t *testing.T) {
	ts := startServer(t, testConfig())
	url := ts.URL + "/v1/chat/completions"
	for _, content := range []string{"hi", "Which product does the shopper open?"} {
		code, _, out := post(t, url, chatReq(ts.modelID(), content, nil))
		if code != 200 {
			t.Fatalf("status %d: %v", code, out)
		}
		want, wantFinish := chatText(t, out)
		wantUsage := out["usage"].(map[string]any)

		body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":%q}],"temperature":0,"max_tokens":24,"stream":true,"stream_options":{"include_usage":true}}`, ts.modelID(), content)
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("content type %q", ct)
		}
		events, done := sseEvents(t, resp.Body)
		resp.Body.Close()
		if !done {
			t.Fatal("stream did not end with [DONE]")
		}
		var got strings.Builder
		var finish string
		var usage map[string]any
		for _, ev := range events {
			if u, ok := ev["usage"].(map[string]any); ok {
				usage = u
			}
			for _, c := range ev["choices"].([]any) {
				ch := c.(map[string]any)
				if d, ok := ch["delta"].(map[string]any); ok {
					if s, ok := d["content"].(string); ok {
						got.WriteString(s)
					}
				}
				if f, ok := ch["finish_reason"].(string); ok && f != "" {
					finish = f
				}
			}
		}
		if got.String() != want || finish != wantFinish {
			t.Fatalf("stream %q/%s, non-stream %q/%s", got.String(), finish, want, wantFinish)
		}
		if tokenCounts(usage) != tokenCounts(wantUsage) {
			t.Fatalf("stream usage %v, non-stream %v", usage, wantUsage)
		}
	}
}

// A client that closes its connection mid-stream frees its slot: the
// scheduler returns to idle and the next request is served.
func TestDisconnectMidStreamFreesSlot(t *testing.T) {
	c := testConfig()
	c.Slots = 1
	c.StepTokens = 64
	ts := startServer(t, c)
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"model":%q,"prompt":"tell a long story","max_tokens":900,"temperature":1,"seed":3,"stream":true}`, ts.modelID())
	fmt.Fprintf(conn, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	buf := make([]byte, 4096)
	got := ""
	for !strings.Contains(got, "data: ") {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, got)
		}
		got += string(buf[:n])
	}
	if st := ts.stack.sched.Stats(); st.Running != 1 {
		t.Fatalf("stream not running: %+v", st)
	}
	conn.Close()
	waitIdle(t, ts)
	code, _, out := post(t, ts.URL+"/v1/chat/completions", chatReq(ts.modelID(), "next", nil))
	if code != 200 {
		t.Fatalf("next request: %d %v", code, out)
	}
}

// tokenCounts is a usage object without prompt_tokens_details: how many
// prompt tokens came from the prefix cache depends on what ran before.
func tokenCounts(u any) string {
	m, _ := u.(map[string]any)
	return fmt.Sprintf("prompt %v completion %v total %v", m["prompt_tokens"], m["completion_tokens"], m["total_tokens"])
}
