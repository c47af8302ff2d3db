package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nextact/nextact/nextaction"
)

// openaiBackend is ModeOpenAI: POST /v1/chat/completions, streamed, with
// the prompted format's messages. It keeps no state on the target.
type openaiBackend struct {
	h      *http.Client
	base   string
	apiKey string
	opts   requestOptions
	now    func() time.Time
}

func (b *openaiBackend) Open(context.Context, SessionInfo) (Conn, StepResult) {
	return openaiConn{b}, StepResult{}
}

type openaiConn struct{ b *openaiBackend }

func (openaiConn) Close(context.Context) {}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chatChunk is the part of a streamed chat completion chunk that is read.
type chatChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Usage *nextaction.Usage    `json:"usage"`
	Error *nextaction.APIError `json:"error"`
}

func (c openaiConn) Step(ctx context.Context, in StepInput) StepResult {
	o := c.b.opts
	msgs, err := nextaction.BuildPrompt(nextaction.FormatPrompted, nextaction.PromptInput{Page: in.Page, History: in.History, Persona: in.Persona})
	if err != nil {
		r := emptyResult(OutcomeFailed)
		r.Reason, r.Error = "prompt", err.Error()
		return r
	}
	wire := make([]chatMessage, len(msgs))
	for i, m := range msgs {
		wire[i] = chatMessage{m.Role, m.Content}
	}
	body, err := json.Marshal(map[string]any{
		"model": o.model(in.Session), "messages": wire, "max_tokens": o.MaxTokens, "temperature": o.Temperature,
		"seed": o.stepSeed(in.Session, in.Step), "stream": true, "stream_options": map[string]bool{"include_usage": true},
	})
	if err != nil {
		return errorResult(ctx, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.b.base+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return errorResult(ctx, err)
	}
	setHeaders(req, c.b.apiKey, true)
	req.Header.Set("Accept", "text/event-stream")
	start := c.b.now()
	resp, err := c.b.h.Do(req)
	if err != nil {
		return errorResult(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return errorResult(ctx, readStatusError(resp))
	}
	return c.b.readStream(ctx, resp.Body, start)
}

// streamState accumulates one SSE answer.
type streamState struct {
	text          strings.Builder
	first, last   time.Time
	contentEvents int
	usage         *nextaction.Usage
	failed        bool
	done          bool
	errMsg        string
}

// readStream reads an SSE chat stream to [DONE]. TTFT is the time from
// sending the request to the first non-empty content delta; ITL is
// (last content - first content) / (completion_tokens - 1), or per content
// event when the usage is missing.
func (b *openaiBackend) readStream(ctx context.Context, body io.Reader, start time.Time) StepResult {
	var st streamState
	rd := bufio.NewReaderSize(body, 64<<10)
	for !st.done && !st.failed {
		line, err := rd.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			st.failed, st.errMsg = true, "stream line over 64 KiB"
			break
		}
		if len(line) > 0 {
			b.event(&st, bytes.TrimSpace(line))
		}
		if err != nil {
			break
		}
	}
	switch {
	case st.failed:
		r := emptyResult(OutcomeFailed)
		r.Status, r.Reason, r.Error = http.StatusOK, "stream_error", st.errMsg
		return r
	case !st.done && ctx.Err() != nil:
		r := emptyResult(OutcomeFailed)
		r.Status, r.Reason, r.Error = http.StatusOK, "cancelled", "the run's deadline cut the stream"
		return r
	case !st.done:
		r := emptyResult(OutcomeFailed)
		r.Status, r.Reason, r.Error = http.StatusOK, "stream_truncated", "the stream ended without [DONE]"
		return r
	}
	return st.result(start)
}

// event handles one line of the stream.
func (b *openaiBackend) event(st *streamState, line []byte) {
	data, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return // comments (keep-alives), event names, blank lines
	}
	data = bytes.TrimSpace(data)
	if string(data) == "[DONE]" {
		st.done = true
		return
	}
	var ch chatChunk
	if err := json.Unmarshal(data, &ch); err != nil {
		st.failed, st.errMsg = true, "bad event: "+err.Error()
		return
	}
	if ch.Error != nil {
		st.failed, st.errMsg = true, "error event: "+ch.Error.Message
		return
	}
	if ch.Usage != nil {
		st.usage = ch.Usage
	}
	for _, c := range ch.Choices {
		if c.Delta.Content == "" {
			continue
		}
		t := b.now()
		if st.contentEvents == 0 {
			st.first = t
		}
		st.last = t
		st.contentEvents++
		st.text.WriteString(c.Delta.Content)
	}
}

func (st *streamState) result(start time.Time) StepResult {
	r := emptyResult(OutcomeSuccess)
	r.Status = http.StatusOK
	if st.contentEvents > 0 {
		r.TTFT = st.first.Sub(start)
	}
	steps := st.contentEvents - 1
	if u := st.usage; u != nil {
		r.PromptTokens, r.CompletionTokens = u.PromptTokens, u.CompletionTokens
		if u.PromptTokensDetails != nil {
			r.CachedTokens = u.PromptTokensDetails.CachedTokens
		}
		if u.CompletionTokens > 1 {
			steps = u.CompletionTokens - 1
		}
	}
	if st.contentEvents > 1 && steps > 0 {
		r.ITL = st.last.Sub(st.first) / time.Duration(steps)
	}
	if rationale, a, ok := parseAnswer(st.text.String()); ok {
		r.Action, r.Rationale = &a, rationale
	}
	return r
}

// parseAnswer reads a prompted-format answer: the JSON object from the
// first '{' to the last '}' (so a code fence or a preamble around it is
// tolerated).
func parseAnswer(text string) (string, nextaction.Action, bool) {
	i, j := strings.IndexByte(text, '{'), strings.LastIndexByte(text, '}')
	if i < 0 || j < i {
		return "", nextaction.Action{}, false
	}
	rationale, a, err := nextaction.ParsePromptedOutput([]byte(text[i : j+1]))
	if err != nil {
		return "", nextaction.Action{}, false
	}
	return rationale, a, true
}
