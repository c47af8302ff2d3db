package server

import (
	"context"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"github.com/nextact/nextact/batching"
)

// maxChoices bounds n, the choices generated for each prompt.
const maxChoices = 16

// choiceN validates n: 1 when absent, at most maxChoices, and with
// prompts prompts, at most maxPrompts choices in all. Streaming takes one
// choice.
func (p *genParams) choiceN(prompts int) (int, error) {
	if p.N == nil {
		return 1, nil
	}
	n := *p.N
	switch {
	case n < 1 || n > maxChoices:
		return 0, invalid("n", "'n' must be between 1 and %d, got %d.", maxChoices, n)
	case n*prompts > maxPrompts:
		return 0, invalid("n", "%d prompts with 'n' %d make %d choices; at most %d are allowed in one request.", prompts, n, n*prompts, maxPrompts)
	}
	return n, nil
}

// forkSeed is the seed of choice j of a prompt: with a seed, seed+j, so
// every choice is reproducible and differs from the others; without, each
// choice draws its own.
func forkSeed(s batching.Sampling, j int) batching.Sampling {
	if s.Seed != nil && j > 0 {
		seed := *s.Seed + uint64(j)
		s.Seed = &seed
	}
	return s
}

// generateChoices answers a request of several choices: reqs[p][j] is
// choice j of prompt p (j > 0: the same prompt as j = 0). Every prompt's
// first choice is submitted at once, so prompts run concurrently; its
// other choices once its prompt is in the KV (Handle.Prefilled), so with
// the prefix cache they copy that KV instead of computing the prompt again
// (the prompt is prefilled once, the sequences forked). Choice j of
// prompt p has index p*n+j; the usage counts each prompt once and sums
// the completions. A choice that cannot be submitted cancels the others,
// and the request fails.
func (s *Server) generateChoices(ctx context.Context, c *fiber.Ctx, m *Model, reqs [][]batching.Request, kind endpoint, cv choiceView) error {
	handles, err := submitChoices(ctx, ctx, m, reqs)
	if err != nil {
		return err
	}
	cancelAll := func() { cancelHandles(handles...) }
	meta := s.newMeta(m, kind)
	stop := s.watchClient(c, cancelAll)
	var results []batching.Chunk
	var usage batching.Usage
	var waitErr error
	for _, hs := range handles {
		for j, h := range hs {
			res, err := h.Wait(ctx)
			if err != nil && waitErr == nil {
				waitErr = waitError(err)
				cancelAll()
			}
			results = append(results, res)
			usage.CompletionTokens += res.Usage.CompletionTokens
			if j == 0 {
				usage.PromptTokens += res.Usage.PromptTokens
				usage.CachedTokens += res.Usage.CachedTokens
			}
		}
	}
	if stop() {
		return errClientGone
	}
	if waitErr != nil {
		return waitErr
	}
	for _, res := range results {
		if err := finishError(ctx, res); err != nil {
			return err
		}
	}
	return c.JSON(buildResponse(meta, results, usage, cv))
}

// submitChoices submits reqs as generateChoices describes (every prompt's
// first choice at once, its other choices once its prompt is in the KV),
// under submitCtx, waiting no longer than ctx. handles[p][j] is choice j
// of prompt p. A choice that cannot be submitted cancels the others.
func submitChoices(ctx, submitCtx context.Context, m *Model, reqs [][]batching.Request) ([][]*batching.Handle, error) {
	handles := make([][]*batching.Handle, len(reqs))
	fail := func(err error) ([][]*batching.Handle, error) {
		cancelHandles(handles...)
		return nil, err
	}
	for p, forks := range reqs {
		h, err := m.Generator.Submit(submitCtx, forks[0])
		if err != nil {
			return fail(err)
		}
		handles[p] = append(handles[p], h)
	}
	for p, forks := range reqs {
		if len(forks) > 1 {
			select {
			case <-handles[p][0].Prefilled():
			case <-ctx.Done():
				return fail(waitError(ctx.Err()))
			}
		}
		for _, req := range forks[1:] {
			h, err := m.Generator.Submit(submitCtx, req)
			if err != nil {
				return fail(err)
			}
			handles[p] = append(handles[p], h)
		}
	}
	return handles, nil
}

// cancelHandles cancels every handle of every prompt.
func cancelHandles(handles ...[]*batching.Handle) {
	for _, hs := range handles {
		for _, h := range hs {
			h.Cancel()
		}
	}
}

// forks builds the n requests of one prompt, each with its own constraint
// (constraints hold state) and seed.
func forks(n int, build func() (batching.Request, error)) ([]batching.Request, error) {
	out := make([]batching.Request, n)
	for j := range out {
		req, err := build()
		if err != nil {
			return nil, err
		}
		req.Sampling = forkSeed(req.Sampling, j)
		out[j] = req
	}
	return out, nil
}

// streamChoices answers one prompt's n choices (forks, n above 1) with
// one stream: submitted as generateChoices submits them, under a context
// of the request's deadline that outlives the handler, and written by a
// choicesStream.
func (s *Server) streamChoices(ctx context.Context, c *fiber.Ctx, m *Model, forks []batching.Request, kind endpoint, opts genOptions) error {
	deadline, _ := ctx.Deadline()
	sctx, scancel := context.WithDeadline(s.base, deadline)
	handles, err := submitChoices(ctx, sctx, m, [][]batching.Request{forks})
	if err != nil {
		scancel()
		return err
	}
	hs := handles[0]
	meta := s.newMeta(m, kind)
	cs := &choicesStream{log: s.log, hs: hs, ctx: sctx, cancel: scancel, includeUsage: opts.includeUsage,
		errorEvent: s.errorEvent, keepAlive: s.keepAlive, release: holdLease(c)}
	for j := range forks {
		cs.formats = append(cs.formats, streamEvents(meta, m, opts, j))
	}
	s.startStream(c, "text/event-stream", func(done func()) { cs.done = done }, cs.run)
	return nil
}

// completionChoices answers /v1/completions with several prompts or n
// above 1: prompt p's requests are prepared as a single prompt's are.
func (s *Server) completionChoices(ctx context.Context, c *fiber.Ctx, m *Model, prompts [][]int32, n int, opts genOptions) error {
	reqs := make([][]batching.Request, len(prompts))
	for p, prompt := range prompts {
		param := "prompt"
		if len(prompts) > 1 {
			param = fmt.Sprintf("prompt[%d]", p)
		}
		var err error
		if reqs[p], err = forks(n, func() (batching.Request, error) {
			return s.prepare(ctx, c, m, prompt, opts, param)
		}); err != nil {
			return err
		}
	}
	if opts.stream { // one prompt: a list is refused with stream
		return s.streamChoices(ctx, c, m, reqs[0], textEndpoint, opts)
	}
	return s.generateChoices(ctx, c, m, reqs, textEndpoint, choiceView{v: m.Vocab, lp: opts.lp, prompts: prompts, n: n})
}
