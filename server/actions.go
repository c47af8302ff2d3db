package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
)

// Actions configures POST /v1/actions/next for a model; a Model without it
// answers that endpoint with 404.
type Actions struct {
	// Vocab indexes the model's vocabulary for constrained decoding.
	Vocab *nextaction.Vocab
	// Grammars caches compiled page grammars (shared across requests).
	Grammars *nextaction.GrammarCache
	// DefaultFormat applies when a request names none.
	DefaultFormat nextaction.Format
	Limits        nextaction.Limits
	// SchemaLimits bound response_format JSON schemas (zero fields:
	// nextaction.DefaultSchemaLimits); over one is a 400 naming it.
	SchemaLimits nextaction.SchemaLimits
	// MaxPageBytes bounds the page's HTML (413 above it).
	MaxPageBytes int
	// DefaultMaxTokens applies when a request gives no max_tokens.
	DefaultMaxTokens int

	interlude []int32 // fine-tuned format: end of rationale turn to action turn
}

// prepareActions checks a model's action settings and computes what every
// fine-tuned request needs.
func prepareActions(m *Model) error {
	a := m.Actions
	if a == nil {
		return nil
	}
	if a.Vocab == nil || a.Grammars == nil {
		return fmt.Errorf("model %s: actions need a vocabulary and a grammar cache", m.ID)
	}
	if a.MaxPageBytes <= 0 || a.DefaultMaxTokens <= 0 {
		return fmt.Errorf("model %s: actions need a positive page limit and default max_tokens", m.ID)
	}
	if _, err := nextaction.ParseFormat(string(a.DefaultFormat)); err != nil {
		return fmt.Errorf("model %s: default action format: %w", m.ID, err)
	}
	in, err := interlude(m.Format, m.Tokenizer)
	if err != nil {
		return fmt.Errorf("model %s: %w", m.ID, err)
	}
	a.interlude = in
	return nil
}

// interlude is what the fine-tuned format puts between the rationale and
// the action: the end of the rationale turn, the fixed end-of-rationale user
// turn, and the start of the action turn. Its first token must be the
// model's end of turn, which the model itself samples.
func interlude(f models.ChatFormat, tok Tokenizer) ([]int32, error) {
	const mark = "\x00rationale\x00"
	segs, err := f.Render([]models.Message{{Role: "user", Content: "page"}, {Role: "assistant", Content: mark}, nextaction.FinetunedActionTurn()})
	if err != nil {
		return nil, fmt.Errorf("render interlude: %w", err)
	}
	for i, s := range segs {
		if !s.Special && s.Text == mark {
			toks, err := tokenizeSegments(context.Background(), tok, segs[i+1:])
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

// nextAction answers POST /v1/actions/next.
func (s *Server) nextAction(c *fiber.Ctx) error {
	start := s.now()
	var req nextaction.NextActionRequest
	if err := decodeJSON(c.Body(), &req); err != nil {
		return err
	}
	m, err := s.actionModel(req.Model)
	if err != nil {
		return err
	}
	resp, err := s.runAction(c, m, &req, start)
	if err != nil {
		return err
	}
	return c.JSON(resp)
}

// actionModel finds a model that serves next actions; any other is a 404.
func (s *Server) actionModel(id string) (*Model, error) {
	m, err := s.model(id)
	if err != nil {
		return nil, err
	}
	if m.Actions == nil {
		return nil, &requestError{notFound: true, param: "model", code: "model_not_found", msg: fmt.Sprintf("The model %q does not serve next actions.", id)}
	}
	return m, nil
}

// runAction generates the next action of r on m, a model that serves
// actions (see actionModel), and returns the answer of POST
// /v1/actions/next. start is the request's arrival, for the timing; the
// request's deadline counts from there, preparation included.
func (s *Server) runAction(c *fiber.Ctx, m *Model, r *nextaction.NextActionRequest, start time.Time) (*nextaction.NextActionResponse, error) {
	ctx, cancel := s.requestContext()
	defer cancel()
	job, err := s.actionJob(ctx, m, r)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err // the deadline passed while preparing
	}
	job.req.Priority = requestPriority(c)
	h, err := m.Generator.Submit(ctx, job.req)
	if err != nil {
		return nil, err
	}
	stop := s.watchClient(c, h)
	ch, first, err := s.awaitAction(ctx, h, start)
	if stop() {
		return nil, errClientGone
	}
	if err != nil {
		return nil, err
	}
	return answerAction(job, ch.Usage, first, s.now().Sub(start))
}

// awaitAction waits for the action's end, timing its first token.
func (s *Server) awaitAction(ctx context.Context, h *batching.Handle, start time.Time) (batching.Chunk, time.Duration, error) {
	var first time.Duration
	for {
		ch, err := h.Next(ctx)
		if err != nil {
			return ch, first, waitError(err)
		}
		if first == 0 && (ch.Text != "" || ch.Done) {
			first = s.now().Sub(start)
		}
		if !ch.Done {
			continue
		}
		return ch, first, finishError(ctx, ch)
	}
}

// actionJob is a validated next-action request ready to submit.
type actionJob struct {
	page   *nextaction.Page
	format nextaction.Format
	limits nextaction.Limits
	req    batching.Request
	// exactly one of these is set
	prompted  *nextaction.ByteConstraint
	finetuned *nextaction.FinetunedConstraint
}

func (s *Server) actionJob(ctx context.Context, m *Model, r *nextaction.NextActionRequest) (*actionJob, error) {
	a := m.Actions
	if r.Page == "" {
		return nil, invalid("page", "page is required: the current page's simplified HTML.")
	}
	if len(r.Page) > a.MaxPageBytes {
		return nil, tooLarge("page", "page_too_large", "The page has %d bytes, over the page limit of %d bytes (--max-page-bytes).", len(r.Page), a.MaxPageBytes)
	}
	format := a.DefaultFormat
	if r.Format != "" {
		f, err := nextaction.ParseFormat(r.Format)
		if err != nil {
			return nil, invalid("format", "%v", err)
		}
		format = f
	}
	page, err := nextaction.ParsePage(r.Page)
	if err != nil {
		return nil, invalid("page", "%v", err)
	}
	msgs, err := nextaction.BuildPrompt(format, nextaction.PromptInput{Page: r.Page, History: r.History, Persona: r.Persona})
	if err != nil {
		var fe *nextaction.FieldError
		if errors.As(err, &fe) {
			return nil, invalid(fe.Field, "%s", fe.Error())
		}
		return nil, invalid("history", "%v", err)
	}
	if len(msgs) > s.cfg.MaxMessages {
		return nil, &requestError{param: "history", code: "too_many_messages", msg: fmt.Sprintf(
			"The history of %d steps renders to %d messages; at most %d are allowed.", len(r.History), len(msgs), s.cfg.MaxMessages)}
	}
	segs, err := m.Format.Render(msgs)
	if err != nil {
		return nil, invalid("history", "%v", err)
	}
	prompt, err := tokenizeSegments(ctx, m.Tokenizer, segs)
	if err != nil {
		return nil, err
	}
	g, err := a.Grammars.Action(page, format, a.Limits)
	if err != nil {
		return nil, err
	}
	job := &actionJob{page: page, format: format, limits: a.Limits}
	var cons batching.Constraint
	if format == nextaction.FormatFinetuned {
		job.finetuned, err = nextaction.NewFinetunedConstraint(a.Vocab, g, a.interlude)
		if err != nil {
			return nil, err
		}
		cons = job.finetuned
	} else {
		job.prompted = nextaction.NewByteConstraint(a.Vocab, g)
		cons = job.prompted
	}
	maxTokens, err := actionBudget(r.MaxTokens, a.DefaultMaxTokens, cons.MinTokens(), len(prompt), m.ContextLength)
	if err != nil {
		return nil, err
	}
	sampling, err := actionSampling(r)
	if err != nil {
		return nil, err
	}
	job.req = batching.Request{Prompt: prompt, MaxTokens: maxTokens, Sampling: sampling, Constraint: cons}
	return job, nil
}

// actionBudget picks max_tokens: the request's or the default (shrunk to
// the context left), never below what a complete answer needs.
func actionBudget(requested, def, need, promptLen, ctxLen int) (int, error) {
	if requested < 0 {
		return 0, invalid("max_tokens", "max_tokens must be positive, got %d.", requested)
	}
	if requested > 0 && requested < need {
		return 0, invalid("max_tokens", "max_tokens %d is too few for a complete action on this page; it needs at least %d.", requested, need)
	}
	var req *int
	if requested > 0 {
		req = &requested
	}
	n, err := completionBudget(promptLen, ctxLen, req, def, "page")
	if err != nil {
		return 0, err
	}
	if n < need {
		return 0, &requestError{param: "page", code: "context_length_exceeded", msg: fmt.Sprintf(
			"The prompt has %d tokens and leaves %d of the context of %d, but a complete action needs %d. Shorten the page or history.",
			promptLen, n, ctxLen, need)}
	}
	return n, nil
}

func actionSampling(r *nextaction.NextActionRequest) (batching.Sampling, error) {
	var s batching.Sampling
	if r.Temperature != nil {
		if *r.Temperature < 0 || *r.Temperature > 2 {
			return s, invalid("temperature", "temperature must be between 0 and 2, got %g.", *r.Temperature)
		}
		s.Temperature = *r.Temperature
	}
	s.Seed = r.Seed
	return s, nil
}

// answerAction turns the constrained output into the response. The
// constraint guarantees a parseable, valid action; anything else is a bug,
// reported as a 500.
func answerAction(job *actionJob, u batching.Usage, first, total time.Duration) (*nextaction.NextActionResponse, error) {
	var (
		rationale string
		action    nextaction.Action
		err       error
	)
	if job.finetuned != nil {
		rationale = job.finetuned.Rationale()
		action, err = nextaction.ParseAction(job.finetuned.ActionJSON())
	} else {
		rationale, action, err = nextaction.ParsePromptedOutput(job.prompted.Output())
	}
	if err == nil {
		err = action.Validate(job.page, job.limits.MaxTextBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("constrained output is not a valid action: %w", err)
	}
	return &nextaction.NextActionResponse{
		Action:    action,
		Rationale: rationale,
		Usage: nextaction.Usage{
			PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens,
			TotalTokens:         u.PromptTokens + u.CompletionTokens,
			PromptTokensDetails: &nextaction.PromptTokensDetails{CachedTokens: u.CachedTokens},
		},
		Timing: nextaction.Timing{TotalMs: ms(total), FirstTokenMs: ms(first)},
	}, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// structuredOutput is the constraint of a json_object or json_schema
// response_format. It uses the model's action vocabulary index; the output
// always parses, matches the schema and closes within max_tokens.
func structuredOutput(m *Model, rf *responseFormat) (batching.Constraint, error) {
	if m.Actions == nil {
		return nil, invalid("response_format", "The model %q does not support structured outputs.", m.ID)
	}
	var schema []byte
	if rf.Type == "json_schema" {
		schema = rf.JSONSchema.Schema
	}
	g, err := m.Actions.Grammars.Schema(schema, m.Actions.SchemaLimits)
	if err != nil {
		var (
			ue *nextaction.UnsupportedError
			le *nextaction.LimitError
		)
		switch {
		case errors.As(err, &ue):
			return nil, &requestError{param: "response_format.json_schema.schema", code: "unsupported_schema", msg: ue.Error() + "."}
		case errors.As(err, &le):
			got := strconv.Itoa(le.Got)
			if le.Limit == nextaction.LimitGrammarNodes {
				got = "more than " + strconv.Itoa(le.Max) // counting stops there
			}
			return nil, &requestError{param: "response_format.json_schema.schema", code: "schema_too_large", msg: fmt.Sprintf(
				"The schema exceeds the server's limit on %s (at %s): at most %d, this schema has %s. Simplify it (smaller maxItems, fewer values, less nesting).",
				le.Limit, le.Path, le.Max, got)}
		}
		return nil, invalid("response_format.json_schema.schema", "The schema cannot be used: %v.", err)
	}
	return nextaction.NewByteConstraint(m.Actions.Vocab, g), nil
}
