package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/client"
)

// Backend opens shopper sessions on one target. Implementations MUST be
// safe for concurrent use.
type Backend interface {
	// Open starts session s. When the target refuses, Open returns a nil
	// Conn and the result to record as the session's first step.
	Open(ctx context.Context, s SessionInfo) (Conn, StepResult)
}

// Conn is one open session. A Conn is used by one goroutine at a time.
type Conn interface {
	// Step asks for the shopper's next action. It never panics on a bad
	// answer: every way it can end is a StepResult.
	Step(ctx context.Context, in StepInput) StepResult
	// Close ends the session on the target (best effort).
	Close(ctx context.Context)
}

// SessionInfo describes a session when it opens.
type SessionInfo struct {
	Index   int
	Persona string
}

// StepInput is what a target is asked at one step.
type StepInput struct {
	Session, Step int
	Page          string
	// History holds the earlier steps, oldest first. ModeSessions does
	// not send it: the server keeps it.
	History []nextaction.Step
	Persona string
}

// StepResult is how a step ended on the target.
type StepResult struct {
	Outcome Outcome
	Reason  string
	Status  int
	// TTFT and ITL are unknown (-1) when not measured.
	TTFT, ITL time.Duration
	// Token counts are unknown (-1) when not reported.
	PromptTokens, CompletionTokens, CachedTokens int
	// Action is the answer's action, nil when the answer held none that
	// parsed. It is not yet checked against the page.
	Action    *nextaction.Action
	Rationale string
	// Error says what went wrong when the step was not a success.
	Error string
}

// emptyResult is a result with nothing measured.
func emptyResult(o Outcome) StepResult {
	return StepResult{Outcome: o, TTFT: unknown, ITL: unknown, PromptTokens: unknown, CompletionTokens: unknown, CachedTokens: unknown}
}

// statusError is a non-2xx answer.
type statusError struct {
	Status  int
	Message string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// errorResult classifies a failed call: 429 and 503 are rejections, any
// other status, transport and decoding errors are failures, and an error
// after ctx ended is a cancellation.
func errorResult(ctx context.Context, err error) StepResult {
	r := emptyResult(OutcomeFailed)
	r.Error = err.Error()
	var ae *client.APIError
	var se *statusError
	switch {
	case errors.As(err, &ae):
		r.Status = ae.Status
	case errors.As(err, &se):
		r.Status = se.Status
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case r.Status == http.StatusTooManyRequests || r.Status == http.StatusServiceUnavailable:
		r.Outcome = OutcomeRejected
		r.Reason = fmt.Sprintf("http_%d", r.Status)
	case r.Status != 0:
		r.Reason = fmt.Sprintf("http_%d", r.Status)
	case ctx.Err() != nil:
		r.Reason = "cancelled"
	case errors.As(err, &syn), errors.As(err, &typ), errors.Is(err, io.ErrUnexpectedEOF):
		r.Reason = "decode"
	default:
		r.Reason = "transport"
	}
	return r
}

// actionResult turns a next-action answer into a StepResult. TTFT is the
// server's timing.first_token_ms; ITL is derived from the server's timing
// as (total_ms - first_token_ms) / (completion_tokens - 1).
func actionResult(res *nextaction.NextActionResponse) StepResult {
	r := emptyResult(OutcomeSuccess)
	r.Status = http.StatusOK
	r.PromptTokens, r.CompletionTokens = res.Usage.PromptTokens, res.Usage.CompletionTokens
	if d := res.Usage.PromptTokensDetails; d != nil {
		r.CachedTokens = d.CachedTokens
	}
	if t := res.Timing; t.TotalMs > 0 {
		r.TTFT = msDuration(t.FirstTokenMs)
		if n := res.Usage.CompletionTokens; n > 1 {
			r.ITL = msDuration((t.TotalMs - t.FirstTokenMs) / float64(n-1))
		}
	}
	if res.Action.Type != "" {
		a := res.Action
		r.Action = &a
	}
	r.Rationale = res.Rationale
	return r
}

func msDuration(x float64) time.Duration { return time.Duration(x * float64(time.Millisecond)) }

// requestOptions are the generation options of every step.
type requestOptions struct {
	Model       string
	Format      string
	MaxTokens   int
	Temperature float64
	Seed        uint64
}

// model is the model of a session: with a comma-separated list of
// models (--model a,b), sessions take them in turn, so requests to the
// models alternate.
func (o requestOptions) model(session int) string {
	if !strings.Contains(o.Model, ",") {
		return o.Model
	}
	ms := strings.Split(o.Model, ",")
	return strings.TrimSpace(ms[session%len(ms)])
}

// stepSeed is the sampling seed of a step: fixed by the workload's seed,
// the session and the step.
func (o requestOptions) stepSeed(session, step int) uint64 {
	return o.Seed*1_000_003 + uint64(session)*1009 + uint64(step)
}

// actionsBackend is ModeActions: stateless, the history resent each step.
type actionsBackend struct {
	c    *client.Client
	opts requestOptions
}

func (b *actionsBackend) Open(context.Context, SessionInfo) (Conn, StepResult) {
	return actionsConn{b}, StepResult{}
}

type actionsConn struct{ b *actionsBackend }

func (c actionsConn) Step(ctx context.Context, in StepInput) StepResult {
	o := c.b.opts
	temp, seed := o.Temperature, o.stepSeed(in.Session, in.Step)
	res, err := c.b.c.NextAction(ctx, nextaction.NextActionRequest{
		Model: o.model(in.Session), Page: in.Page, History: in.History, Persona: in.Persona, Format: o.Format,
		Temperature: &temp, Seed: &seed, MaxTokens: o.MaxTokens,
	})
	if err != nil {
		return errorResult(ctx, err)
	}
	return actionResult(res)
}

func (actionsConn) Close(context.Context) {}

// sessionsBackend is ModeSessions: POST /v1/sessions, POST
// /v1/sessions/{id}/steps {page}, DELETE /v1/sessions/{id}.
type sessionsBackend struct {
	h      *http.Client
	base   string
	apiKey string
	opts   requestOptions
}

func (b *sessionsBackend) Open(ctx context.Context, s SessionInfo) (Conn, StepResult) {
	body := map[string]any{"model": b.opts.model(s.Index)}
	if s.Persona != "" {
		body["persona"] = s.Persona
	}
	if b.opts.Format != "" {
		body["format"] = b.opts.Format
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := doJSON(ctx, b.h, http.MethodPost, b.base+"/v1/sessions", b.apiKey, body, &out); err != nil {
		return nil, errorResult(ctx, fmt.Errorf("create session: %w", err))
	}
	if out.ID == "" {
		r := emptyResult(OutcomeFailed)
		r.Status, r.Reason, r.Error = http.StatusOK, "decode", "create session: no id in the answer"
		return nil, r
	}
	return &sessionConn{b: b, id: out.ID}, StepResult{}
}

type sessionConn struct {
	b  *sessionsBackend
	id string
}

func (c *sessionConn) path() string { return c.b.base + "/v1/sessions/" + url.PathEscape(c.id) }

func (c *sessionConn) Step(ctx context.Context, in StepInput) StepResult {
	o := c.b.opts
	body := map[string]any{"page": in.Page, "max_tokens": o.MaxTokens, "temperature": o.Temperature, "seed": o.stepSeed(in.Session, in.Step)}
	var res nextaction.NextActionResponse
	if err := doJSON(ctx, c.b.h, http.MethodPost, c.path()+"/steps", c.b.apiKey, body, &res); err != nil {
		return errorResult(ctx, err)
	}
	return actionResult(&res)
}

func (c *sessionConn) Close(ctx context.Context) {
	_ = doJSON(ctx, c.b.h, http.MethodDelete, c.path(), c.b.apiKey, nil, nil)
}

// Limits on the bodies read.
const (
	maxBodyBytes  = 16 << 20
	maxErrorBytes = 64 << 10
)

// doJSON sends body (when not nil) as JSON and decodes a 2xx answer into
// out (when not nil). A non-2xx answer is a *statusError.
func doJSON(ctx context.Context, h *http.Client, method, u, apiKey string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	setHeaders(req, apiKey, body != nil)
	resp, err := h.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readStatusError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodyBytes))
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, maxBodyBytes)).Decode(out)
}

func setHeaders(req *http.Request, apiKey string, hasBody bool) {
	req.Header.Set("Accept", "application/json")
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
}

// readStatusError reads a non-2xx answer, taking the message of an
// OpenAI-shaped error body when there is one.
func readStatusError(resp *http.Response) *statusError {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	var body nextaction.ErrorResponse
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &body) == nil && body.Error.Message != "" {
		msg = body.Error.Message
	}
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return &statusError{Status: resp.StatusCode, Message: strings.ToValidUTF8(msg, "\uFFFD")}
}
