package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nextact/nextact/server"
)

// collected is what a client makes of a stream.
type collected struct {
	text    string
	finish  string
	usage   *usage
	errBody []byte
	roles   int
}

// collect checks the chunk format of a stream and gathers its content.
func collect(t *testing.T, evs []sseEvent, object string, includeUsage bool) collected {
	t.Helper()
	if len(evs) == 0 || !evs[len(evs)-1].done {
		t.Fatalf("stream does not end with [DONE]: %d events", len(evs))
	}
	var c collected
	var text strings.Builder
	for i, ev := range evs[:len(evs)-1] {
		if ev.done {
			t.Fatalf("[DONE] at event %d of %d", i, len(evs))
		}
		var ch streamChunk
		if err := json.Unmarshal(ev.data, &ch); err != nil {
			t.Fatalf("event %d is not JSON: %v: %s", i, err, ev.data)
		}
		if ch.Error != nil {
			c.errBody = ev.data
			continue
		}
		if ch.Object != object || ch.Created != testNow.Unix() || ch.Model != testModel || ch.ID == "" {
			t.Errorf("event %d envelope: %s", i, ev.data)
		}
		if includeUsage && ch.Usage == nil && !bytes.Contains(ev.data, []byte(`"usage":null`)) {
			t.Errorf("event %d lacks usage:null: %s", i, ev.data)
		}
		if ch.Usage != nil {
			if len(ch.Choices) != 0 || i != len(evs)-2 {
				t.Errorf("usage event %d of %d has choices: %s", i, len(evs), ev.data)
			}
			c.usage = ch.Usage
			continue
		}
		if len(ch.Choices) != 1 {
			t.Fatalf("event %d: %d choices: %s", i, len(ch.Choices), ev.data)
		}
		choice := ch.Choices[0]
		if c.finish != "" {
			t.Errorf("choice event %d after the finish event: %s", i, ev.data)
		}
		if choice.FinishReason != nil {
			c.finish = *choice.FinishReason
		}
		switch {
		case object == "text_completion" && choice.Text != nil:
			text.WriteString(*choice.Text)
		case object == "chat.completion.chunk" && choice.Delta != nil:
			if choice.Delta.Role != nil {
				if *choice.Delta.Role != "assistant" || i != 0 {
					t.Errorf("role %q in event %d", *choice.Delta.Role, i)
				}
				c.roles++
			}
			if choice.Delta.Content != nil {
				text.WriteString(*choice.Delta.Content)
			}
			if choice.FinishReason != nil && (choice.Delta.Content != nil || choice.Delta.Role != nil) {
				t.Errorf("finish event has a non-empty delta: %s", ev.data)
			}
		default:
			t.Errorf("event %d has no text or delta: %s", i, ev.data)
		}
	}
	c.text = text.String()
	return c
}

func TestStreamMatchesNonStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{engine: func(f *fakeEngine) { f.eogAfter = 30 }})
	type endpoint struct {
		path, object string
		body         func(extra string) string
	}
	chat := endpoint{"/v1/chat/completions", "chat.completion.chunk", func(x string) string { return chatBody("stream me", x) }}
	text := endpoint{"/v1/completions", "text_completion", func(x string) string { return completionBody("stream me", x) }}
	tests := []struct {
		name         string
		ep           endpoint
		extra        string
		includeUsage bool
		wantFinish   string
	}{
		{"chat length", chat, `"max_tokens":20`, false, "length"},
		{"chat length usage", chat, `"max_tokens":20`, true, "length"},
		{"chat eog usage", chat, ``, true, "stop"},
		{"chat stop string", chat, `"stop":"` + greedyText('\n', 10)[6:8] + `"`, true, "stop"},
		{"text length", text, `"max_tokens":25`, false, "length"},
		{"text eog usage", text, ``, true, "stop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := e.do(t, http.MethodPost, tt.ep.path, tt.ep.body(tt.extra))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("non-stream: %d %s", resp.StatusCode, body)
			}
			var whole struct {
				Choices []struct {
					Text         string                   `json:"text"`
					Message      struct{ Content string } `json:"message"`
					FinishReason string                   `json:"finish_reason"`
				} `json:"choices"`
				Usage usage `json:"usage"`
			}
			if err := json.Unmarshal(body, &whole); err != nil {
				t.Fatal(err)
			}
			wantText := whole.Choices[0].Text + whole.Choices[0].Message.Content
			if wantText == "" || whole.Choices[0].FinishReason != tt.wantFinish {
				t.Fatalf("non-stream: %s", body)
			}

			extra := `"stream":true`
			if tt.includeUsage {
				extra += `,"stream_options":{"include_usage":true}`
			}
			if tt.extra != "" {
				extra += "," + tt.extra
			}
			resp, body = e.do(t, http.MethodPost, tt.ep.path, tt.ep.body(extra))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("stream: %d %s", resp.StatusCode, body)
			}
			if ct, cc := resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"); ct != "text/event-stream" || cc != "no-cache" {
				t.Errorf("headers: Content-Type %q, Cache-Control %q", ct, cc)
			}
			got := collect(t, readEvents(t, bytes.NewReader(body)), tt.ep.object, tt.includeUsage)
			if got.text != wantText {
				t.Errorf("streamed text %q, want %q", got.text, wantText)
			}
			if got.finish != tt.wantFinish || got.errBody != nil {
				t.Errorf("finish %q error %s, want %q", got.finish, got.errBody, tt.wantFinish)
			}
			if tt.ep.object == "chat.completion.chunk" && got.roles != 1 {
				t.Errorf("%d role deltas, want 1 in the first event", got.roles)
			}
			switch {
			case !tt.includeUsage && got.usage != nil:
				t.Errorf("usage sent without include_usage: %+v", got.usage)
			case tt.includeUsage && (got.usage == nil || *got.usage != whole.Usage):
				t.Errorf("usage = %+v, want %+v", got.usage, whole.Usage)
			}
		})
	}
}

func TestStreamEngineFailure(t *testing.T) {
	t.Parallel()
	// The prompt's last prefill step samples token 1; the next two decodes
	// give tokens 2 and 3; the one after fails.
	prefill := (len(llama3Prompt("fail")) + stepTokens - 1) / stepTokens
	e := newEnv(t, envOptions{engine: func(f *fakeEngine) { f.failAt = prefill + 3 }})
	resp, body := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("fail", `"stream":true,"max_tokens":50`))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := collect(t, readEvents(t, bytes.NewReader(body)), "chat.completion.chunk", false)
	if got.text != greedyText('\n', 3) || got.finish != "" {
		t.Errorf("text %q finish %q, want %q and no finish", got.text, got.finish, greedyText('\n', 3))
	}
	if got.errBody == nil {
		t.Fatal("no error event")
	}
	if e := decodeErr(t, bytes.TrimSpace(got.errBody)).Error; e.Type != "server_error" || deref(e.Code) != "generation_failed" {
		t.Errorf("error event: %s", got.errBody)
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{}) // never opened during the test: the engine hangs
	e := newEnv(t, envOptions{
		cfg:    server.Config{RequestTimeout: 150 * time.Millisecond},
		engine: func(f *fakeEngine) { f.gate = gate },
	})
	tests := []struct {
		name   string
		stream bool
	}{
		{"non-stream", false},
		{"stream", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			extra := `"max_tokens":5`
			if tt.stream {
				extra += `,"stream":true`
			}
			start := time.Now()
			resp, body := e.do(t, http.MethodPost, "/v1/chat/completions", chatBody("slow", extra))
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
			errBody := body
			if tt.stream {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				got := collect(t, readEvents(t, bytes.NewReader(body)), "chat.completion.chunk", false)
				errBody = bytes.TrimSpace(got.errBody)
			} else if resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("status %d, want 504: %s", resp.StatusCode, body)
			}
			if e := decodeErr(t, errBody).Error; e.Type != "server_error" || deref(e.Code) != "timeout" {
				t.Errorf("error = %s", errBody)
			}
		})
	}
}
