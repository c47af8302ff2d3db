package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// Chat's logprobs shape (OpenAI's).
type chatLogprobEntry struct {
	Token       string             `json:"token"`
	Logprob     float64            `json:"logprob"`
	RawBytes    []int              `json:"bytes"`
	TopLogprobs []chatLogprobEntry `json:"top_logprobs"`
}

type chatLogprobs struct {
	Content []chatLogprobEntry `json:"content"`
}

// Completions' legacy shape.
type legacyLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []*float64           `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// postInto sends body and decodes a 200 answer into out.
func postInto(t *testing.T, url string, body any, out any) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("answer %s: %v", raw, err)
	}
}

// checkChatEntries checks chat logprob entries: bytes are the token's,
// top entries sorted and k of them, their mass at most 1, a greedy token
// the top-1; it returns the tokens' bytes joined.
func checkChatEntries(t *testing.T, entries []chatLogprobEntry, k int, greedy bool) string {
	t.Helper()
	var all []byte
	for i, e := range entries {
		b := make([]byte, len(e.RawBytes))
		for j, x := range e.RawBytes {
			if x < 0 || x > 255 {
				t.Fatalf("entry %d: byte %d", i, x)
			}
			b[j] = byte(x)
		}
		if strings.ToValidUTF8(string(b), "\uFFFD") != e.Token {
			t.Fatalf("entry %d: token %q, bytes %q", i, e.Token, b)
		}
		all = append(all, b...)
		if e.Logprob > 0 || len(e.TopLogprobs) != k {
			t.Fatalf("entry %d: %+v", i, e)
		}
		var mass float64
		for j, c := range e.TopLogprobs {
			if j > 0 && c.Logprob > e.TopLogprobs[j-1].Logprob {
				t.Fatalf("entry %d: top not sorted: %+v", i, e.TopLogprobs)
			}
			mass += math.Exp(c.Logprob)
		}
		if mass > 1+1e-5 {
			t.Fatalf("entry %d: top mass %v", i, mass)
		}
		if greedy && k > 0 && (e.TopLogprobs[0].Token != e.Token || e.TopLogprobs[0].Logprob != e.Logprob) {
			t.Fatalf("entry %d: greedy token %q (%v) is not the top-1 %+v", i, e.Token, e.Logprob, e.TopLogprobs[0])
		}
	}
	return string(all)
}

// Chat logprobs, whole and streamed: the entries' bytes make the content,
// the top is sorted and greedy takes its first; the stream's entries,
// chunk by chunk, are the whole answer's.
func TestChatLogprobsE2E(t *testing.T) {
	ts := startServer(t, testConfig())
	body := map[string]any{
		"model": ts.modelID(), "messages": []map[string]string{{"role": "user", "content": "Which shirt should the shopper view?"}},
		"max_tokens": 12, "temperature": 0, "logprobs": true, "top_logprobs": 5,
	}
	var whole struct {
		Choices []struct {
			Message      struct{ Content string } `json:"message"`
			Logprobs     *chatLogprobs            `json:"logprobs"`
			FinishReason string                   `json:"finish_reason"`
		} `json:"choices"`
	}
	postInto(t, ts.URL+"/v1/chat/completions", body, &whole)
	ch := whole.Choices[0]
	if ch.Logprobs == nil || len(ch.Logprobs.Content) == 0 {
		t.Fatalf("no logprobs: %+v", ch)
	}
	joined := checkChatEntries(t, ch.Logprobs.Content, 5, true)
	if ch.FinishReason == "length" && joined != ch.Message.Content {
		t.Fatalf("token bytes %q, content %q", joined, ch.Message.Content)
	}

	body["stream"] = true
	data, _ := json.Marshal(body)
	resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var streamed []chatLogprobEntry
	var content string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		var ev struct {
			Choices []struct {
				Delta    struct{ Content string } `json:"delta"`
				Logprobs *chatLogprobs            `json:"logprobs"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		for _, c := range ev.Choices {
			content += c.Delta.Content
			if c.Logprobs != nil {
				if len(c.Logprobs.Content) == 0 {
					t.Fatalf("an event with an empty logprobs content: %q", line)
				}
				streamed = append(streamed, c.Logprobs.Content...)
			} else if c.Delta.Content != "" {
				t.Fatalf("text without logprobs: %q", line)
			}
		}
	}
	if content != ch.Message.Content || !reflect.DeepEqual(streamed, ch.Logprobs.Content) {
		t.Fatalf("streamed %q %+v\nwhole %q %+v", content, streamed, ch.Message.Content, ch.Logprobs.Content)
	}
}

// Completions: logprobs N in the legacy shape (the token itself in its
// top), and echo with max_tokens 0 (lm-eval-harness's loglikelihood
// request, with token-id prompts and lists of them): the text is the
// prompt, the first token has no logprob, and the logprob of token t after
// prompt P equals the one generation gives t after P.
func TestCompletionLogprobsAndEchoE2E(t *testing.T) {
	ts := startServer(t, testConfig())
	url := ts.URL + "/v1/completions"
	type completion struct {
		Choices []struct {
			Index        int             `json:"index"`
			Text         string          `json:"text"`
			Logprobs     *legacyLogprobs `json:"logprobs"`
			FinishReason string          `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	var gen completion
	postInto(t, url, map[string]any{"model": ts.modelID(), "prompt": "The shopper looks at the cart and", "max_tokens": 6, "temperature": 0, "logprobs": 3}, &gen)
	lp := gen.Choices[0].Logprobs
	if lp == nil || len(lp.Tokens) == 0 || len(lp.TokenLogprobs) != len(lp.Tokens) || len(lp.TopLogprobs) != len(lp.Tokens) || len(lp.TextOffset) != len(lp.Tokens) {
		t.Fatalf("logprobs %+v", lp)
	}
	for i, tok := range lp.Tokens {
		top := lp.TopLogprobs[i]
		if got, ok := top[tok]; !ok || lp.TokenLogprobs[i] == nil || got != *lp.TokenLogprobs[i] || len(top) < 3 || len(top) > 4 {
			t.Fatalf("token %d %q: logprob %v, top %v", i, tok, lp.TokenLogprobs[i], top)
		}
		if i > 0 && lp.TextOffset[i] != lp.TextOffset[i-1]+len(lp.Tokens[i-1]) {
			t.Fatalf("text offsets %v", lp.TextOffset)
		}
	}
	if strings.Join(lp.Tokens, "") != gen.Choices[0].Text {
		t.Fatalf("tokens %q, text %q", lp.Tokens, gen.Choices[0].Text)
	}

	// The prompt as token ids: tokenize it the way the server does.
	var tok struct {
		Tokens []int32 `json:"tokens"`
	}
	postInto(t, ts.URL+"/tokenize", map[string]any{"model": ts.modelID(), "content": "The shopper looks at the cart and", "add_special": true}, &tok)
	var first completion
	postInto(t, url, map[string]any{"model": ts.modelID(), "prompt": tok.Tokens, "max_tokens": 1, "temperature": 0, "logprobs": 1}, &first)
	want := *first.Choices[0].Logprobs.TokenLogprobs[0]
	var next struct {
		Tokens []int32 `json:"tokens"`
	}
	postInto(t, ts.URL+"/tokenize", map[string]any{"model": ts.modelID(), "content": first.Choices[0].Text, "add_special": false}, &next)
	if len(next.Tokens) != 1 {
		t.Skipf("the first token's text %q tokenizes to %v", first.Choices[0].Text, next.Tokens)
	}
	full := append(append([]int32(nil), tok.Tokens...), next.Tokens...)
	var echo completion
	postInto(t, url, map[string]any{"model": ts.modelID(), "prompt": [][]int32{full, tok.Tokens}, "max_tokens": 0, "echo": true, "logprobs": 1, "temperature": 0}, &echo)
	if len(echo.Choices) != 2 || echo.Usage.CompletionTokens != 0 || echo.Usage.PromptTokens != len(full)+len(tok.Tokens) {
		t.Fatalf("echo answer %+v", echo)
	}
	for i, prompt := range [][]int32{full, tok.Tokens} {
		c := echo.Choices[i]
		l := c.Logprobs
		if c.Index != i || c.FinishReason != "length" || l == nil || len(l.Tokens) != len(prompt) || l.TokenLogprobs[0] != nil || l.TopLogprobs[0] != nil {
			t.Fatalf("choice %d: %+v", i, c)
		}
		if strings.Join(l.Tokens, "") != c.Text {
			t.Fatalf("choice %d: tokens %q, text %q", i, l.Tokens, c.Text)
		}
		for k := 1; k < len(prompt); k++ {
			if l.TokenLogprobs[k] == nil || *l.TokenLogprobs[k] > 0 || len(l.TopLogprobs[k]) < 1 || len(l.TopLogprobs[k]) > 2 {
				t.Fatalf("choice %d token %d: %v %v", i, k, l.TokenLogprobs[k], l.TopLogprobs[k])
			}
		}
	}
	got := *echo.Choices[0].Logprobs.TokenLogprobs[len(full)-1]
	if math.Abs(got-want) > 1e-4 {
		t.Fatalf("echo scores the generated token at %v, generation gave it %v", got, want)
	}

	// A text prompt with echo: the text is the prompt as given.
	var textEcho completion
	postInto(t, url, map[string]any{"model": ts.modelID(), "prompt": "café cart", "max_tokens": 2, "echo": true, "logprobs": 0, "temperature": 0}, &textEcho)
	c := textEcho.Choices[0]
	if !strings.HasPrefix(c.Text, "café cart") || c.Logprobs == nil || len(c.Logprobs.Tokens) != textEcho.Usage.PromptTokens+textEcho.Usage.CompletionTokens {
		t.Fatalf("text echo %+v", textEcho)
	}
}

// A streamed completion with logprobs: every event with text carries its
// tokens, and together they are the whole answer's.
func TestCompletionLogprobsStreamE2E(t *testing.T) {
	ts := startServer(t, testConfig())
	body := map[string]any{"model": ts.modelID(), "prompt": "The shopper looks at the cart and", "max_tokens": 8, "temperature": 0, "logprobs": 2}
	var whole struct {
		Choices []struct {
			Logprobs legacyLogprobs `json:"logprobs"`
		} `json:"choices"`
	}
	postInto(t, ts.URL+"/v1/completions", body, &whole)
	body["stream"] = true
	data, _ := json.Marshal(body)
	resp, err := http.Post(ts.URL+"/v1/completions", "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events, done := sseEvents(t, resp.Body)
	if !done {
		t.Fatal("stream did not end with [DONE]")
	}
	var toks []string
	var offsets []int
	for _, ev := range events {
		for _, c := range ev["choices"].([]any) {
			ch := c.(map[string]any)
			lp, ok := ch["logprobs"].(map[string]any)
			if !ok {
				continue
			}
			for _, x := range lp["tokens"].([]any) {
				toks = append(toks, x.(string))
			}
			for _, x := range lp["text_offset"].([]any) {
				offsets = append(offsets, int(x.(float64)))
			}
		}
	}
	if !reflect.DeepEqual(toks, whole.Choices[0].Logprobs.Tokens) || !reflect.DeepEqual(offsets, whole.Choices[0].Logprobs.TextOffset) {
		t.Fatalf("streamed %q %v, whole %q %v", toks, offsets, whole.Choices[0].Logprobs.Tokens, whole.Choices[0].Logprobs.TextOffset)
	}
}
