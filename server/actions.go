package server

import (
	"context"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/nextaction"
)

// nextAction answers POST /v1/actions/next: decode, plan, submit, wait,
// answer. The next-action domain (nextaction.Planner) owns everything
// between the request and the scheduler's input, and the answer.
func (s *Server) nextAction(c *fiber.Ctx) error {
	start := s.now()
	ctx, cancel := s.requestContext(c)
	defer cancel()
	var req nextaction.NextActionRequest
	if err := decodeJSON(c.Body(), &req); err != nil {
		return err
	}
	m, release, err := s.actionModel(c, req.Model)
	if err != nil {
		return err
	}
	defer release()
	resp, err := s.runAction(ctx, c, m, &req, start)
	if err != nil {
		return err
	}
	return c.JSON(resp)
}

// actionModel acquires a model that serves next actions; any other is a
// 404.
func (s *Server) actionModel(c *fiber.Ctx, id string) (*Model, func(), error) {
	m, release, err := s.acquire(c, id)
	if err != nil {
		return nil, nil, err
	}
	if m.Actions == nil {
		release()
		return nil, nil, &requestError{notFound: true, param: "model", code: "model_not_found", msg: fmt.Sprintf("The model %q does not serve next actions.", id)}
	}
	return m, release, nil
}

// runAction generates the next action of r on m, a model that serves
// actions (see actionModel), and returns the answer of POST
// /v1/actions/next. ctx is the request's deadline (requestContext) and
// start its arrival, for the timing: the deadline counts from there,
// preparation included.
func (s *Server) runAction(ctx context.Context, c *fiber.Ctx, m *Model, r *nextaction.NextActionRequest, start time.Time) (*nextaction.NextActionResponse, error) {
	plan, err := m.Actions.Plan(ctx, r)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err // the deadline passed while preparing
	}
	h, err := m.Generator.Submit(ctx, batching.Request{
		Prompt: plan.Prompt, MaxTokens: plan.MaxTokens, Constraint: plan.Constraint,
		Sampling: batching.Sampling{Temperature: plan.Temperature, Seed: plan.Seed},
		Priority: requestPriority(c), PriorWait: modelWait(c),
		// A step with history continues an episode: it waits ahead of
		// first steps (episode admission, batching.Request.Continues).
		Continues: len(r.History) > 0,
	})
	if err != nil {
		return nil, err
	}
	stop := s.watchClient(c, h.Cancel)
	ch, first, err := s.awaitAction(ctx, h, start)
	if stop() {
		return nil, errClientGone
	}
	if err != nil {
		return nil, err
	}
	u := ch.Usage
	return plan.Answer(nextaction.Usage{
		PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens,
		PromptTokensDetails: &nextaction.PromptTokensDetails{CachedTokens: u.CachedTokens},
	}, nextaction.Timing{TotalMs: ms(s.now().Sub(start)), FirstTokenMs: ms(first)})
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

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// structuredOutput is the constraint of a json_object or json_schema
// response_format, from the model's grammar support; the output always
// parses, matches the schema and closes within max_tokens.
func structuredOutput(m *Model, rf *responseFormat) (batching.Constraint, error) {
	if m.Grammars == nil {
		return nil, invalid("response_format", "The model %q does not support structured outputs.", m.ID)
	}
	var schema []byte
	if rf.Type == "json_schema" {
		schema = rf.JSONSchema.Schema
	}
	c, err := m.Grammars.JSON(schema)
	if err != nil {
		code, msg := nextaction.SchemaError(err)
		return nil, &requestError{param: "response_format.json_schema.schema", code: code, msg: msg}
	}
	return c, nil
}
