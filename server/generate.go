package server

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
)

// endpoint tells the two completion APIs apart where their responses differ.
type endpoint int

const (
	chatEndpoint endpoint = iota
	textEndpoint
)

// requestContext is a request's server-side deadline, started when its
// handler starts: tokenizing, rendering and compiling a grammar count
// against --request-timeout as generation does. It is also c's user
// context, which bounds the wait for the model's load (acquire).
func (s *Server) requestContext(c *fiber.Ctx) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(s.base, s.cfg.RequestTimeout)
	return ctx, cancel
}

func (s *Server) chatCompletions(c *fiber.Ctx) error {
	ctx, cancel := s.requestContext(c)
	defer cancel()
	var req chatRequest
	if err := decodeJSON(c.Body(), &req); err != nil {
		return err
	}
	m, release, err := s.acquire(c, req.Model)
	if err != nil {
		return err
	}
	defer release()
	msgs, err := req.messages(s.cfg.MaxMessages)
	if err != nil {
		return err
	}
	opts, err := req.options(s.cfg.MaxStopBytes)
	if err != nil {
		return err
	}
	if opts.lp, err = req.logprobOptions(); err != nil {
		return err
	}
	if err := checkLogprobsModel(m, opts.lp); err != nil {
		return err
	}
	m.Defaults.apply(&req.genParams, &opts)
	plan, err := req.toolPlan(m)
	if err != nil {
		return err
	}
	if plan.mode != toolsOff || models.HasToolTurns(msgs) {
		return s.generateTools(ctx, c, m, msgs, opts, &plan, req.N)
	}
	prompt, err := chatPrompt(ctx, m, msgs)
	if err != nil {
		return err
	}
	// The format's end-of-turn markers also stop generation, in case the
	// engine reports a control token as text.
	opts.stop = append(opts.stop, m.Format.StopStrings()...)
	n, err := req.choiceN(1)
	if err != nil {
		return err
	}
	if n > 1 {
		reqs, err := forks(n, func() (batching.Request, error) {
			return s.prepare(ctx, c, m, prompt, opts, "messages")
		})
		if err != nil {
			return err
		}
		if opts.stream {
			return s.streamChoices(ctx, c, m, reqs, chatEndpoint, opts)
		}
		return s.generateChoices(ctx, c, m, [][]batching.Request{reqs}, chatEndpoint, choiceView{v: m.Vocab, lp: opts.lp, prompts: [][]int32{prompt}, n: n})
	}
	return s.generate(ctx, c, m, prompt, opts, chatEndpoint, "messages")
}

// chatPrompt renders msgs in m's chat format and tokenizes them (message
// content with control-token parsing off).
func chatPrompt(ctx context.Context, m *Model, msgs []models.Message) ([]int32, error) {
	segs, err := m.Format.Render(msgs)
	if err != nil {
		return nil, invalid("messages", "The messages cannot be rendered for this model: %v.", err)
	}
	return models.TokenizeSegments(ctx, m.Tokenizer, segs)
}

// textPrompt tokenizes a raw prompt as given (control-token text is
// parsed), after the model's BOS; param names the field it came from.
func textPrompt(m *Model, text, param string) ([]int32, error) {
	toks, err := m.Tokenizer.Tokenize(text, true)
	if err != nil {
		return nil, fmt.Errorf("tokenize prompt: %w", err)
	}
	prompt := make([]int32, 0, len(m.BOS)+len(toks))
	prompt = append(append(prompt, m.BOS...), toks...)
	if len(prompt) == 0 {
		return nil, invalid(param, "'%s' must not be empty.", param)
	}
	return prompt, nil
}

func (s *Server) completions(c *fiber.Ctx) error {
	ctx, cancel := s.requestContext(c)
	defer cancel()
	var req completionRequest
	if err := decodeJSON(c.Body(), &req); err != nil {
		return err
	}
	m, release, err := s.acquire(c, req.Model)
	if err != nil {
		return err
	}
	defer release()
	prompts, err := req.prompts(m.vocabSize())
	if err != nil {
		return err
	}
	lp, err := req.logprobOptions()
	if err != nil {
		return err
	}
	if err := checkLogprobsModel(m, lp); err != nil {
		return err
	}
	if err := checkNeutral(neutralField{"suffix", req.Suffix, []string{`""`}}, neutralField{"best_of", req.BestOf, []string{"1"}}); err != nil {
		return err
	}
	opts, err := req.options(s.cfg.MaxStopBytes)
	if err != nil {
		return err
	}
	opts.lp = lp
	m.Defaults.apply(&req.genParams, &opts)
	if len(prompts) > 1 && opts.stream {
		return invalid("stream", "'stream' is not supported with more than one prompt: send one request per prompt.")
	}
	n, err := req.choiceN(len(prompts))
	if err != nil {
		return err
	}
	toks := make([][]int32, len(prompts))
	for i, p := range prompts {
		param := "prompt"
		if len(prompts) > 1 {
			param = fmt.Sprintf("prompt[%d]", i)
		}
		if toks[i], err = m.completionTokens(p, param); err != nil {
			return err
		}
		if opts.lp.echo {
			opts.lp.echoed = append(opts.lp.echoed, m.echoedPrompt(p, toks[i]))
		}
	}
	if err := opts.lp.checkEchoSize(toks); err != nil {
		return err
	}
	if len(toks) == 1 && n == 1 {
		return s.generate(ctx, c, m, toks[0], opts, textEndpoint, "prompt")
	}
	return s.completionChoices(ctx, c, m, toks, n, opts)
}

// completionTokens is a prompt's tokens: text tokenized after the model's
// BOS, token ids as given.
func (m *Model) completionTokens(p completionPrompt, param string) ([]int32, error) {
	if p.isIDs {
		return p.ids, nil
	}
	return textPrompt(m, p.text, param)
}

// vocabSize is the vocabulary's size, 0 when unknown.
func (m *Model) vocabSize() int {
	if m.Vocab == nil {
		return 0
	}
	return m.Vocab.Size()
}

// responseMeta identifies one response; streams copy it out of the handler.
type responseMeta struct {
	id      string
	created int64
	model   string
	kind    endpoint
}

func (s *Server) newMeta(m *Model, kind endpoint) responseMeta {
	prefix := "chatcmpl-"
	if kind == textEndpoint {
		prefix = "cmpl-"
	}
	id := prefix + strconv.FormatUint(rand.Uint64(), 36) + strconv.FormatUint(rand.Uint64(), 36)
	return responseMeta{id: id, created: s.now().Unix(), model: m.ID, kind: kind}
}

// generate submits a tokenized prompt under the request's deadline (ctx,
// from requestContext; the handler cancels it when it returns) and answers
// with one JSON response or a stream.
func (s *Server) generate(ctx context.Context, c *fiber.Ctx, m *Model, prompt []int32, opts genOptions, kind endpoint, promptParam string) error {
	req, err := s.prepare(ctx, c, m, prompt, opts, promptParam)
	if err != nil {
		return err
	}
	if opts.stream {
		return s.startGeneration(ctx, c, m, req, "text/event-stream", &sseFrames{
			events: streamEvents(s.newMeta(m, kind), m, opts, 0), includeUsage: opts.includeUsage, errorEvent: s.errorEvent,
		}, holdLease(c))
	}
	return s.generateChoices(ctx, c, m, [][]batching.Request{{req}}, kind, choiceView{v: m.Vocab, lp: opts.lp, prompts: [][]int32{prompt}, n: 1})
}

// waitResult submits req and waits for its end, cancelling it when the
// client goes away; a generation that failed is an error.
func (s *Server) waitResult(ctx context.Context, c *fiber.Ctx, m *Model, req batching.Request) (batching.Chunk, error) {
	h, err := m.Generator.Submit(ctx, req)
	if err != nil {
		return batching.Chunk{}, err
	}
	stop := s.watchClient(c, h.Cancel)
	res, err := h.Wait(ctx)
	if stop() {
		return res, errClientGone
	}
	if err != nil {
		return res, waitError(err)
	}
	return res, finishError(ctx, res)
}

// prepare checks a tokenized prompt against the context (the model's, or
// opts.ctxLimit when smaller) and builds its scheduler request: the
// completion budget, sampling, stop strings or the structured-output
// constraint, and the client's priority.
func (s *Server) prepare(ctx context.Context, c *fiber.Ctx, m *Model, prompt []int32, opts genOptions, promptParam string) (batching.Request, error) {
	ctxLen := m.ContextLength
	if opts.ctxLimit > 0 && opts.ctxLimit < ctxLen {
		ctxLen = opts.ctxLimit
	}
	requested := opts.maxTokens
	if left := ctxLen - len(prompt); opts.capMaxTokens && requested != nil && left > 0 && *requested > left {
		requested = &left
	}
	maxTokens, err := completionBudget(len(prompt), ctxLen, requested, cmp.Or(opts.defaultMax, s.cfg.DefaultMaxTokens), promptParam)
	if err != nil {
		return batching.Request{}, err
	}
	req := batching.Request{Prompt: prompt, MaxTokens: maxTokens, Sampling: opts.sampling, Stop: opts.stop,
		Priority: requestPriority(c), PriorWait: modelWait(c)}
	opts.lp.apply(&req)
	if opts.format != nil {
		if req.Constraint, err = structuredOutput(m, opts.format); err != nil {
			return req, err
		}
		req.Stop = nil // the grammar decides where the output ends
	}
	if err := ctx.Err(); err != nil {
		return req, err // the deadline passed while preparing
	}
	return req, nil
}

// startGeneration submits req and answers with a stream in f's format. A
// stream outlives its handler: it gets its own context with the same
// deadline as ctx, and calls release (when not nil) once it has ended, or
// here when the submission fails: release is called exactly once.
func (s *Server) startGeneration(ctx context.Context, c *fiber.Ctx, m *Model, req batching.Request, contentType string, f frames, release func()) error {
	deadline, _ := ctx.Deadline()
	sctx, scancel := context.WithDeadline(s.base, deadline)
	h, err := m.Generator.Submit(sctx, req)
	if err != nil {
		scancel()
		if release != nil {
			release()
		}
		return err
	}
	st := &stream{log: s.log, h: h, ctx: sctx, cancel: scancel, keepAlive: s.keepAlive, frames: f, release: release}
	s.startStream(c, contentType, func(done func()) { st.done = done }, st.run)
	return nil
}

// choiceView is what the choices of a response need besides their
// results: the vocabulary and logprob options (logprobs, echo), the
// prompts, and the choices per prompt (choice i is of prompt i/n).
type choiceView struct {
	v       Vocabulary
	lp      logprobOptions
	prompts [][]int32
	n       int
}

// newUsageBody is a response's usage of u.
func newUsageBody(u batching.Usage) usageBody {
	return usageBody{
		PromptTokens:        u.PromptTokens,
		CompletionTokens:    u.CompletionTokens,
		TotalTokens:         u.PromptTokens + u.CompletionTokens,
		PromptTokensDetails: promptTokensDetails{CachedTokens: u.CachedTokens},
	}
}

// buildResponse is the JSON answer of results, choice i from results[i],
// with usage u.
func buildResponse(meta responseMeta, results []batching.Chunk, u batching.Usage, cv choiceView) any {
	usage := newUsageBody(u)
	if meta.kind == textEndpoint {
		resp := completionResponse{ID: meta.id, Object: "text_completion", Created: meta.created, Model: meta.model, Usage: usage}
		for i, res := range results {
			p := i / cv.n
			c := cv.lp.textChoice(p, cv.v, cv.prompts[p], res)
			c.Index = i
			resp.Choices = append(resp.Choices, c)
		}
		return resp
	}
	resp := chatResponse{ID: meta.id, Object: "chat.completion", Created: meta.created, Model: meta.model, Usage: usage}
	for i, res := range results {
		resp.Choices = append(resp.Choices, chatChoice{
			Index:        i,
			Message:      assistantMessage{Role: "assistant", Content: res.Text},
			Logprobs:     cv.lp.chatLogprobs(cv.v, res),
			FinishReason: res.Finish.String(),
		})
	}
	return resp
}
