package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/client"
)

// Request is what a target is asked for one case: the case's inputs as
// prepared by the reduction policy.
type Request struct {
	Page    string
	History []nextaction.Step
	Persona string
	Seed    uint64
}

// Answer is a target's answer to a Request.
type Answer struct {
	// Action is the answer's action; nil when it held none.
	Action    *nextaction.Action
	Rationale string
	// Raw is the start of an answer that held no action.
	Raw                            string
	PromptTokens, CompletionTokens int
}

// Target answers next-action requests. Implementations MUST be safe for
// concurrent use. An error of an HTTP answer other than 2xx is a
// *StatusError.
type Target interface {
	Predict(ctx context.Context, r Request) (Answer, error)
}

// StatusError is an answer with a status other than 2xx.
type StatusError struct {
	Status int
	// RetryAfter is the answer's Retry-After; 0 when absent.
	RetryAfter time.Duration
	Message    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Retryable reports whether the request may succeed later: 429 and 503.
func (e *StatusError) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
}

// Modes of a target.
const (
	// ModeActions is nextact's POST /v1/actions/next.
	ModeActions = "actions"
	// ModeOpenAI is any OpenAI-compatible POST /v1/chat/completions.
	ModeOpenAI = "openai"
)

// TargetConfig is one target of a run.
type TargetConfig struct {
	URL string `json:"url"`
	// Mode is ModeActions or ModeOpenAI.
	Mode string `json:"mode"`
	// Model is the model id (resolved from /v1/models when empty).
	Model string `json:"model"`
	// Format is the prompt format of ModeActions (prompted, finetuned);
	// ModeOpenAI is always prompted.
	Format string `json:"format"`
	// JSONSchema sends response_format json_schema (ModeOpenAI).
	JSONSchema bool `json:"json_schema"`
}

// GenOptions are the generation options of every request.
type GenOptions struct {
	MaxTokens   int
	Temperature float64
}

// NewTarget returns the target of t.
func NewTarget(t TargetConfig, g GenOptions, h *http.Client, apiKey string) Target {
	if t.Mode == ModeOpenAI {
		return &openaiTarget{t: t, g: g, h: h, apiKey: apiKey}
	}
	return &actionsTarget{t: t, g: g, c: client.New(t.URL, client.WithHTTPClient(h), client.WithAPIKey(apiKey))}
}

// actionsTarget is ModeActions: the typed client of nextact's
// /v1/actions/next.
type actionsTarget struct {
	t TargetConfig
	g GenOptions
	c *client.Client
}

var _ Target = (*actionsTarget)(nil)

func (a *actionsTarget) Predict(ctx context.Context, r Request) (Answer, error) {
	temp, seed := a.g.Temperature, r.Seed
	res, err := a.c.NextAction(ctx, nextaction.NextActionRequest{
		Model: a.t.Model, Page: r.Page, History: r.History, Persona: r.Persona, Format: a.t.Format,
		Temperature: &temp, Seed: &seed, MaxTokens: a.g.MaxTokens,
	})
	var ae *client.APIError
	if errors.As(err, &ae) {
		return Answer{}, &StatusError{Status: ae.Status, RetryAfter: ae.RetryAfter, Message: ae.Err.Message}
	}
	if err != nil {
		return Answer{}, err
	}
	ans := Answer{Rationale: res.Rationale, PromptTokens: res.Usage.PromptTokens, CompletionTokens: res.Usage.CompletionTokens}
	if res.Action.Type != "" {
		act := res.Action
		ans.Action = &act
	}
	return ans, nil
}

// openaiTarget is ModeOpenAI: POST /v1/chat/completions with the prompted
// format's messages, not streamed.
type openaiTarget struct {
	t      TargetConfig
	g      GenOptions
	h      *http.Client
	apiKey string
}

var _ Target = (*openaiTarget)(nil)

// Limits on what is read back.
const (
	maxAnswerBytes = 4 << 20
	maxErrorBytes  = 64 << 10
	// rawBytes is how much of an answer without an action is kept.
	rawBytes = 2048
)

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatRequest struct {
	Model          string         `json:"model"`
	Messages       []chatMessage  `json:"messages"`
	MaxTokens      int            `json:"max_tokens"`
	Temperature    float64        `json:"temperature"`
	Seed           uint64         `json:"seed"`
	ResponseFormat map[string]any `json:"response_format,omitempty"`
}

type chatResponse struct {
	Choices []struct {
		Message struct {
			Content *string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
	Usage *nextaction.Usage `json:"usage"`
}

// answerSchema is the prompted format as a JSON schema in the subset
// that strict modes accept everywhere: every property required,
// additionalProperties false, no length constraints (OpenAI's and Azure's
// strict modes refuse maxLength); an empty name or text stands for none.
var answerSchema = map[string]any{
	"type": "json_schema",
	"json_schema": map[string]any{
		"name":   "next_action",
		"strict": true,
		"schema": map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"rationale", "action"},
			"properties": map[string]any{
				"rationale": map[string]any{"type": "string"},
				"action": map[string]any{
					"type": "object", "additionalProperties": false, "required": []string{"type", "name", "text"},
					"properties": map[string]any{
						"type": map[string]any{"type": "string", "enum": []string{nextaction.TypeClick, nextaction.TypeTypeAndSubmit, nextaction.TypeTerminate}},
						"name": map[string]any{"type": "string"},
						"text": map[string]any{"type": "string"},
					},
				},
			},
		},
	},
}

func (o *openaiTarget) Predict(ctx context.Context, r Request) (Answer, error) {
	msgs, err := nextaction.BuildPrompt(nextaction.FormatPrompted, nextaction.PromptInput{Page: r.Page, History: r.History, Persona: r.Persona})
	if err != nil {
		return Answer{}, err
	}
	body := chatRequest{Model: o.t.Model, MaxTokens: o.g.MaxTokens, Temperature: o.g.Temperature, Seed: r.Seed}
	for _, m := range msgs {
		body.Messages = append(body.Messages, chatMessage{m.Role, m.Content})
	}
	if o.t.JSONSchema {
		body.ResponseFormat = answerSchema
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return Answer{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(o.t.URL, "/")+"/v1/chat/completions", bytes.NewReader(raw))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if o.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.apiKey)
	}
	resp, err := o.h.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Answer{}, statusError(resp)
	}
	var out chatResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswerBytes)).Decode(&out); err != nil {
		return Answer{}, fmt.Errorf("decode answer: %w", err)
	}
	if len(out.Choices) == 0 || out.Choices[0].Message.Content == nil {
		return Answer{}, errors.New("decode answer: no choices[0].message.content")
	}
	return readChatAnswer(*out.Choices[0].Message.Content, out.Usage), nil
}

// readChatAnswer finds the action in a chat answer's text.
func readChatAnswer(text string, u *nextaction.Usage) Answer {
	var ans Answer
	if u != nil {
		ans.PromptTokens, ans.CompletionTokens = u.PromptTokens, u.CompletionTokens
	}
	rationale, a, ok := nextaction.FindPromptedAnswer(text)
	if !ok {
		ans.Raw, _ = cutString(text, rawBytes)
		return ans
	}
	// The schema's empty strings stand for no name and no text.
	ans.Action, ans.Rationale = &a, rationale
	return ans
}

// statusError reads a non-2xx answer, taking the message of an
// OpenAI-shaped error body when there is one.
func statusError(resp *http.Response) *StatusError {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	e := &StatusError{Status: resp.StatusCode, RetryAfter: client.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var body nextaction.ErrorResponse
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &body) == nil && body.Error.Message != "" {
		msg = body.Error.Message
	}
	msg, _ = cutString(strings.ToValidUTF8(msg, "\uFFFD"), 300)
	e.Message = msg
	return e
}
