package server

import (
	"context"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"github.com/nextact/nextact/batching"
)

// generateMany answers a /v1/completions request of several prompts: each
// is its own request to the scheduler, all submitted at once so that they
// run concurrently, answered together with one choice per prompt (index
// set, in prompt order) and the usage summed. A prompt that cannot be
// submitted cancels the ones already submitted, and the request fails.
func (s *Server) generateMany(ctx context.Context, c *fiber.Ctx, m *Model, prompts [][]int32, opts genOptions) error {
	reqs := make([]batching.Request, len(prompts))
	for i, prompt := range prompts {
		param := fmt.Sprintf("prompt[%d]", i)
		maxTokens, err := completionBudget(len(prompt), m.ContextLength, opts.maxTokens, s.cfg.DefaultMaxTokens, param)
		if err != nil {
			return err
		}
		reqs[i] = batching.Request{Prompt: prompt, MaxTokens: maxTokens, Sampling: opts.sampling, Stop: opts.stop, Priority: requestPriority(c)}
		opts.lp.apply(&reqs[i])
		if opts.format != nil {
			if reqs[i].Constraint, err = structuredOutput(m, opts.format); err != nil {
				return err
			}
			reqs[i].Stop = nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	handles := make([]*batching.Handle, 0, len(reqs))
	cancelAll := func() {
		for _, h := range handles {
			h.Cancel()
		}
	}
	for _, req := range reqs {
		h, err := m.Generator.Submit(ctx, req)
		if err != nil {
			cancelAll()
			return err
		}
		handles = append(handles, h)
	}
	meta := s.newMeta(m, textEndpoint)
	stop := s.watchClient(c, cancelAll)
	results := make([]batching.Chunk, len(handles))
	var waitErr error
	for i, h := range handles {
		res, err := h.Wait(ctx)
		if err != nil && waitErr == nil {
			waitErr = waitError(err)
			cancelAll()
		}
		results[i] = res
	}
	if stop() {
		return errClientGone
	}
	if waitErr != nil {
		return waitErr
	}
	resp := completionResponse{ID: meta.id, Object: "text_completion", Created: meta.created, Model: meta.model}
	for i, res := range results {
		if err := finishError(ctx, res); err != nil {
			return err
		}
		resp.Choices = append(resp.Choices, opts.lp.textChoice(i, m.Vocab, prompts[i], res))
		resp.Usage.PromptTokens += res.Usage.PromptTokens
		resp.Usage.CompletionTokens += res.Usage.CompletionTokens
		resp.Usage.PromptTokensDetails.CachedTokens += res.Usage.CachedTokens
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens + resp.Usage.CompletionTokens
	return c.JSON(resp)
}
