package nextaction

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/nextact/nextact/models"
)

// The pipeline of one next action, owned by this package so that the HTTP
// API, sessions, the bench and the eval harness share it:
//
//	Planner.Plan(request)  -> Plan: prompt tokens, constraint, budget, sampling
//	(the caller runs the plan on its scheduler)
//	Plan.Answer(usage, timing) -> NextActionResponse
//
// A Planner is built once per model (its chat format, tokenizer, grammar
// support and limits); a Plan is one request's.

// PlannerConfig is what a Planner is built from. Every field is required
// but MaxMessages.
type PlannerConfig struct {
	// ChatFormat renders the prompt's messages.
	ChatFormat models.ChatFormat
	// Tokenizer is the model's. MUST be goroutine-safe.
	Tokenizer models.Tokenizer
	// Grammars is the model's constrained-decoding support.
	Grammars *Grammars
	// DefaultFormat applies when a request names none.
	DefaultFormat Format
	// Limits bound the rationale and typed text.
	Limits Limits
	// MaxPageBytes bounds a request's page (a 413 above it).
	MaxPageBytes int
	// DefaultMaxTokens applies when a request gives no max_tokens; it is
	// shrunk to the context left after the prompt.
	DefaultMaxTokens int
	// ContextLength is the tokens one sequence holds: prompt plus answer.
	ContextLength int
	// MaxMessages bounds the messages a prompt renders to (history steps
	// take two or four each); 0: no bound.
	MaxMessages int
}

// Planner turns next-action requests into plans for one model.
// Goroutine-safe; immutable after NewPlanner.
type Planner struct {
	cfg PlannerConfig
	// interlude is the fine-tuned format's tokens from the end of the
	// rationale turn to the start of the action turn.
	interlude []int32
}

// NewPlanner validates cfg and computes what every request shares.
func NewPlanner(cfg PlannerConfig) (*Planner, error) {
	switch {
	case cfg.Tokenizer == nil || cfg.Grammars == nil:
		return nil, errors.New("planner: a tokenizer and grammars are required")
	case cfg.MaxPageBytes <= 0 || cfg.DefaultMaxTokens <= 0 || cfg.ContextLength < 2:
		return nil, fmt.Errorf("planner: page limit (%d), default max_tokens (%d) and context length (%d) must be positive",
			cfg.MaxPageBytes, cfg.DefaultMaxTokens, cfg.ContextLength)
	case cfg.MaxMessages < 0:
		return nil, fmt.Errorf("planner: max messages must not be negative, got %d", cfg.MaxMessages)
	case cfg.Limits.MaxTextBytes < 1 || cfg.Limits.MaxRationaleBytes < 0:
		return nil, fmt.Errorf("planner: limits must be positive, got %+v", cfg.Limits)
	}
	if _, err := models.ParseChatFormat(string(cfg.ChatFormat)); err != nil {
		return nil, fmt.Errorf("planner: %w", err)
	}
	if _, err := ParseFormat(string(cfg.DefaultFormat)); err != nil {
		return nil, fmt.Errorf("planner: default format: %w", err)
	}
	in, err := interlude(cfg.ChatFormat, cfg.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("planner: %w", err)
	}
	return &Planner{cfg: cfg, interlude: in}, nil
}

// DefaultFormat is the format of requests that name none.
func (p *Planner) DefaultFormat() Format { return p.cfg.DefaultFormat }

// interlude is what the fine-tuned format puts between the rationale and
// the action: the end of the rationale turn, the fixed end-of-rationale user
// turn, and the start of the action turn. Its first token must be the
// model's end of turn, which the model itself samples.
func interlude(f models.ChatFormat, tok models.Tokenizer) ([]int32, error) {
	const mark = "\x00rationale\x00"
	segs, err := f.Render([]models.Message{{Role: roleUser, Content: "page"}, {Role: roleAssistant, Content: mark}, FinetunedActionTurn()})
	if err != nil {
		return nil, fmt.Errorf("render interlude: %w", err)
	}
	for i, s := range segs {
		if !s.Special && s.Text == mark {
			toks, err := models.TokenizeSegments(context.Background(), tok, segs[i+1:])
			if err != nil {
				return nil, err
			}
			if len(toks) == 0 {
				return nil, errors.New("chat format has nothing between turns")
			}
			return toks, nil
		}
	}
	return nil, errors.New("chat format does not keep assistant content apart")
}

// RequestError is a next-action request refused for what it asks, not for
// its shape: over a size limit (TooLarge, HTTP 413) or not fitting the
// model's context. Msg is a whole sentence for the client.
type RequestError struct {
	// Field is the request field at fault, as a JSON path.
	Field string
	// Code is a machine-readable reason: page_too_large,
	// context_length_exceeded, too_many_messages.
	Code     string
	TooLarge bool
	Msg      string
}

func (e *RequestError) Error() string { return e.Msg }

// Plan is one next-action request ready to run: submit Prompt with
// MaxTokens, the sampling fields and Constraint, then call Answer.
type Plan struct {
	Prompt      []int32
	MaxTokens   int
	Temperature float64
	// Seed is the request's, or nil.
	Seed       *uint64
	Format     Format
	Constraint *ActionConstraint
	// History is what the history policy left out, for the usage.
	History HistoryUsage
}

// Plan validates r and prepares it: the page parsed and bounded, the
// prompt rendered and tokenized (ctx bounds that work: it is checked
// between segments) and fitted to the context by the history policy
// (window.go), the page's grammar from the cache, the token budget.
// Errors are *FieldError (400 naming the field), *RequestError, or ctx's
// error; anything else is the server's fault.
func (p *Planner) Plan(ctx context.Context, r *NextActionRequest) (*Plan, error) {
	if r.Page == "" {
		return nil, &FieldError{Field: "page", Msg: "required: the current page's simplified HTML"}
	}
	if len(r.Page) > p.cfg.MaxPageBytes {
		return nil, &RequestError{Field: "page", Code: "page_too_large", TooLarge: true, Msg: fmt.Sprintf(
			"The page has %d bytes, over the page limit of %d bytes (--max-page-bytes).", len(r.Page), p.cfg.MaxPageBytes)}
	}
	format := p.cfg.DefaultFormat
	if r.Format != "" {
		f, err := ParseFormat(r.Format)
		if err != nil {
			return nil, &FieldError{Field: "format", Msg: err.Error()}
		}
		format = f
	}
	if r.MaxTokens < 0 {
		return nil, &FieldError{Field: "max_tokens", Msg: fmt.Sprintf("must be positive, got %d", r.MaxTokens)}
	}
	if t := r.Temperature; t != nil && (*t < 0 || *t > 2 || math.IsNaN(*t)) {
		return nil, &FieldError{Field: "temperature", Msg: fmt.Sprintf("must be between 0 and 2, got %g", *t)}
	}
	pol := HistoryPolicy{}
	if r.HistoryPolicy != nil {
		pol = *r.HistoryPolicy
	}
	pol, err := pol.Normalize("history_policy")
	if err != nil {
		return nil, err
	}
	page, err := ParsePage(r.Page)
	if err != nil {
		return nil, &FieldError{Field: "page", Msg: err.Error()}
	}
	in := PromptInput{Page: r.Page, History: r.History, Persona: r.Persona}
	msgs, err := BuildPrompt(format, in)
	if err != nil {
		return nil, err
	}
	if p.cfg.MaxMessages > 0 && len(msgs) > p.cfg.MaxMessages {
		return nil, &RequestError{Field: "history", Code: "too_many_messages", Msg: fmt.Sprintf(
			"The history of %d steps renders to %d messages; at most %d are allowed.", len(r.History), len(msgs), p.cfg.MaxMessages)}
	}
	cons, err := p.constraint(page, format)
	if err != nil {
		return nil, err
	}

	reserve := r.MaxTokens
	if reserve == 0 {
		reserve = p.cfg.DefaultMaxTokens
	}
	// A reserve over the context leaves no room (budget refuses it);
	// bounded, the window's arithmetic cannot wrap.
	reserve = min(reserve, p.cfg.ContextLength)
	var fit fitted
	if format == FormatTools {
		fit, err = p.planTools(ctx, msgs, pol, len(in.History))
	} else {
		fit, err = p.fit(ctx, format, in, msgs, pol, reserve)
	}
	if err != nil {
		return nil, err
	}
	maxTokens, err := p.budget(r.MaxTokens, cons.MinTokens(), len(fit.prompt))
	if err != nil {
		return nil, err
	}
	pl := &Plan{Prompt: fit.prompt, MaxTokens: maxTokens, Seed: r.Seed, Format: format, Constraint: cons, History: fit.usage}
	if r.Temperature != nil {
		pl.Temperature = *r.Temperature
	}
	return pl, nil
}

// constraint is the decoder of one answer on page in format f.
func (p *Planner) constraint(page *Page, f Format) (*ActionConstraint, error) {
	if f == FormatTools {
		return p.toolsConstraint(page)
	}
	g, err := p.cfg.Grammars.cache.Action(page, f, p.cfg.Limits)
	if err != nil {
		return nil, err
	}
	c := &ActionConstraint{page: page, maxText: p.cfg.Limits.MaxTextBytes}
	if f == FormatFinetuned {
		ft, err := NewFinetunedConstraint(p.cfg.Grammars.vocab, g, p.interlude)
		if err != nil {
			return nil, err
		}
		c.actionDecoder = ft
		c.result = func() (string, Action, error) {
			a, err := ParseAction(ft.ActionJSON())
			return ft.Rationale(), a, err
		}
		return c, nil
	}
	bc := NewByteConstraint(p.cfg.Grammars.vocab, g)
	c.actionDecoder = bc
	c.result = func() (string, Action, error) { return ParsePromptedOutput(bc.Output()) }
	return c, nil
}

// budget picks max_tokens: the request's or the default (shrunk to the
// context left), never below what a complete answer needs. It compares
// with what is left, never adds to the prompt, so no size wraps.
func (p *Planner) budget(requested, need, promptLen int) (int, error) {
	ctxLen := p.cfg.ContextLength
	if requested > 0 && requested < need {
		return 0, &FieldError{Field: "max_tokens", Msg: fmt.Sprintf(
			"%d is too few for a complete action on this page; it needs at least %d", requested, need)}
	}
	left := ctxLen - promptLen
	if left <= 0 {
		return 0, &RequestError{Field: "page", Code: "context_length_exceeded", Msg: fmt.Sprintf(
			"This model's maximum context length is %d tokens, but the prompt has %d tokens, leaving no room for the answer. Shorten the page or history.",
			ctxLen, promptLen)}
	}
	if requested > left {
		return 0, &RequestError{Field: "max_tokens", Code: "context_length_exceeded", Msg: fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, you requested %s tokens (%d in the prompt, %d for the answer). Reduce the page, history or max_tokens.",
			ctxLen, saturatedSum(promptLen, requested), promptLen, requested)}
	}
	n := requested
	if n == 0 {
		n = min(p.cfg.DefaultMaxTokens, left)
	}
	if n < need {
		return 0, &RequestError{Field: "page", Code: "context_length_exceeded", Msg: fmt.Sprintf(
			"The prompt has %d tokens and leaves %d of the context of %d, but a complete action needs %d. Shorten the page or history.",
			promptLen, n, ctxLen, need)}
	}
	return n, nil
}

// saturatedSum renders a+b for a message, for non-negative a and b,
// without wrapping: "more than <max int>" when the sum overflows.
func saturatedSum(a, b int) string {
	if b > math.MaxInt-a {
		return fmt.Sprintf("more than %d", math.MaxInt)
	}
	return strconv.Itoa(a + b)
}

// Answer turns the finished generation into the response. The constraint
// guarantees a parseable action valid on the page; anything else is a
// bug, returned as an error (a 500).
func (pl *Plan) Answer(u Usage, t Timing) (*NextActionResponse, error) {
	res, err := pl.Constraint.Result()
	if err != nil {
		return nil, err
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	h := pl.History
	u.History = &h
	return &NextActionResponse{Action: res.Action, Rationale: res.Rationale, Usage: u, Timing: t}, nil
}

// Result is a finished answer in either format.
type Result struct {
	Rationale string
	Action    Action
}

// actionDecoder is what both formats' decoders do for the scheduler.
type actionDecoder interface {
	Mask(logits []float32, remaining int) error
	Accept(tok int32) (done bool, err error)
	MinTokens() int
	Allows(tok int32, remaining int) bool
	Forced() []int32
	Done() bool
}

// ActionConstraint decodes one answer on one page, in either format; it is
// the scheduler's constraint (Mask, Accept, MinTokens) with the Allower and
// Forcer extensions, and knows the answer once complete (Result).
type ActionConstraint struct {
	actionDecoder
	result  func() (string, Action, error)
	page    *Page
	maxText int
}

// Result is the answer once the decoder is done: its rationale and its
// action, validated against the page.
func (c *ActionConstraint) Result() (Result, error) {
	rationale, a, err := c.result()
	if err == nil {
		err = a.Validate(c.page, c.maxText)
	}
	if err != nil {
		return Result{}, fmt.Errorf("constrained output is not a valid action: %w", err)
	}
	return Result{Rationale: rationale, Action: a}, nil
}
