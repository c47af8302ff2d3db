package server

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/ollama/ollama/api"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
)

// ollamaChat answers POST /api/chat: Ollama's chat, rendered in the
// model's chat format, streamed as NDJSON unless "stream":false.
func (s *Server) ollamaChat(c *fiber.Ctx) error {
	r := &ollamaReply{kind: ollamaChatKind, start: s.now(), now: s.now}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	var req api.ChatRequest
	if err := decodeOllama(c.Body(), &req); err != nil {
		return err
	}
	if err := checkOllamaChat(&req); err != nil {
		return err
	}
	msgs, err := ollamaMessages(req.Messages, s.cfg.MaxMessages)
	if err != nil {
		return err
	}
	m, release, opts, err := s.ollamaStart(c, r, ollamaCommon{req.Model, req.Options, req.Format, req.Stream, req.KeepAlive, req.Logprobs, req.TopLogprobs})
	if err != nil {
		return err
	}
	defer release()
	if len(msgs) == 0 {
		return c.JSON(r.loadReply(req.KeepAlive))
	}
	prompt, err := chatPrompt(ctx, m, msgs)
	if err != nil {
		return err
	}
	opts.stop = append(opts.stop, m.Format.StopStrings()...)
	return s.ollamaRun(ctx, c, m, prompt, opts, "messages", r)
}

// ollamaGenerate answers POST /api/generate: the prompt as a user turn in
// the model's chat format (after system, when given), or as given with
// raw; streamed as NDJSON unless "stream":false.
func (s *Server) ollamaGenerate(c *fiber.Ctx) error {
	r := &ollamaReply{kind: ollamaGenerateKind, start: s.now(), now: s.now}
	ctx, cancel := s.requestContext(c)
	defer cancel()
	var req api.GenerateRequest
	if err := decodeOllama(c.Body(), &req); err != nil {
		return err
	}
	if err := checkOllamaGenerate(&req); err != nil {
		return err
	}
	m, release, opts, err := s.ollamaStart(c, r, ollamaCommon{req.Model, req.Options, req.Format, req.Stream, req.KeepAlive, req.Logprobs, req.TopLogprobs})
	if err != nil {
		return err
	}
	defer release()
	if req.Prompt == "" {
		return c.JSON(r.loadReply(req.KeepAlive))
	}
	var prompt []int32
	if req.Raw {
		prompt, err = textPrompt(m, req.Prompt, "prompt")
	} else {
		var msgs []models.Message
		if req.System != "" {
			msgs = append(msgs, models.Message{Role: "system", Content: req.System})
		}
		prompt, err = chatPrompt(ctx, m, append(msgs, models.Message{Role: "user", Content: req.Prompt}))
		opts.stop = append(opts.stop, m.Format.StopStrings()...)
	}
	if err != nil {
		return err
	}
	return s.ollamaRun(ctx, c, m, prompt, opts, "prompt", r)
}

// ollamaCommon are the fields chat and generate share.
type ollamaCommon struct {
	model       string
	options     map[string]any
	format      json.RawMessage
	stream      *bool
	keepAlive   *api.Duration
	logprobs    bool
	topLogprobs int
}

// ollamaStart validates the shared fields and acquires the model (the
// caller defers release; a stream holds the lease with holdLease), noting
// when it was acquired.
func (s *Server) ollamaStart(c *fiber.Ctx, r *ollamaReply, req ollamaCommon) (*Model, func(), genOptions, error) {
	opts, err := s.ollamaOptions(req.options, req.format, req.stream)
	if err != nil {
		return nil, nil, opts, err
	}
	var top *int
	if req.topLogprobs != 0 {
		top = &req.topLogprobs
	}
	if opts.lp, err = chatLogprobs(req.logprobs, top); err != nil {
		return nil, nil, opts, err
	}
	setKeepAlive(c, req.keepAlive)
	m, release, err := s.ollamaLease(c, req.model)
	if err != nil {
		return nil, nil, opts, err
	}
	r.model, r.loaded = m.ID, s.now()
	if err := checkLogprobsModel(m, opts.lp); err != nil {
		release()
		return nil, nil, opts, err
	}
	if opts.lp.logprobs {
		r.vocab = m.Vocab
	}
	return m, release, opts, nil
}

// ollamaRun generates from a tokenized prompt and answers in Ollama's
// shape: NDJSON chunks, or one object when opts.stream is off.
func (s *Server) ollamaRun(ctx context.Context, c *fiber.Ctx, m *Model, prompt []int32, opts genOptions, promptParam string, r *ollamaReply) error {
	if opts.ctxLimit > m.ContextLength {
		return invalid("options.num_ctx", "num_ctx %d is above this model's context of %d tokens per sequence (the server's --ctx); ask for at most %d.",
			opts.ctxLimit, m.ContextLength, m.ContextLength)
	}
	req, err := s.prepare(ctx, c, m, prompt, opts, promptParam)
	if err != nil {
		return err
	}
	r.submitted = s.now()
	if opts.stream {
		f := &ollamaFrames{reply: r, errorMessage: s.ollamaErrorMessage}
		return s.startGeneration(ctx, c, m, req, "application/x-ndjson", f, holdLease(c))
	}
	h, err := m.Generator.Submit(ctx, req)
	if err != nil {
		return err
	}
	stop := s.watchClient(c, h.Cancel)
	text, final, err := r.collect(ctx, h)
	if stop() {
		return errClientGone
	}
	if err != nil {
		return err
	}
	return c.JSON(r.final(text, final))
}

// ollamaKind tells the two generation endpoints apart in their replies.
type ollamaKind int

const (
	ollamaChatKind ollamaKind = iota
	ollamaGenerateKind
)

// ollamaReply builds one request's replies and times it. Durations follow
// Ollama's: total from the handler's start; load while the model was
// acquired; prompt evaluation from submission to the first text (queueing
// included); evaluation from the first text to the end.
type ollamaReply struct {
	kind  ollamaKind
	model string
	now   func() time.Time
	// start, loaded, submitted and first (the first text; zero before)
	// are the request's moments.
	start, loaded, submitted, first time.Time
	// vocab is set when the request asks for logprobs: replies then
	// carry their tokens' (ollamaLogprobs).
	vocab Vocabulary
}

// chunk is a reply carrying text (done false) or the last one, with the
// logprobs of toks when the request asked for them.
func (r *ollamaReply) chunk(text string, toks []batching.TokenLogprob, done bool, reason string, m api.Metrics) any {
	at := r.now().UTC()
	lps := r.logprobs(toks)
	if r.kind == ollamaGenerateKind {
		return api.GenerateResponse{Model: r.model, CreatedAt: at, Response: text, Done: done, DoneReason: reason, Metrics: m, Logprobs: lps}
	}
	return api.ChatResponse{Model: r.model, CreatedAt: at, Message: api.Message{Role: "assistant", Content: text},
		Done: done, DoneReason: reason, Metrics: m, Logprobs: lps}
}

// logprobs are toks in Ollama's shape (nil unless the request asked):
// the same values as /v1's (the model's log-softmax of the raw logits),
// a token's text its piece, bytes its raw bytes.
func (r *ollamaReply) logprobs(toks []batching.TokenLogprob) []api.Logprob {
	if r.vocab == nil || len(toks) == 0 {
		return nil
	}
	entry := func(id int32, lp float32) api.TokenLogprob {
		piece := r.vocab.Piece(id)
		b := make([]int, len(piece))
		for i := range len(piece) {
			b[i] = int(piece[i])
		}
		return api.TokenLogprob{Token: strings.ToValidUTF8(piece, "\uFFFD"), Logprob: float64(shownLogprob(lp)), Bytes: b}
	}
	out := make([]api.Logprob, len(toks))
	for i, t := range toks {
		out[i].TokenLogprob = entry(t.ID, t.Logprob)
		for _, top := range t.Top {
			out[i].TopLogprobs = append(out[i].TopLogprobs, entry(top.ID, top.Logprob))
		}
	}
	return out
}

// text is a streamed reply with text, noting when the first came.
func (r *ollamaReply) text(s string, toks []batching.TokenLogprob) any {
	if r.first.IsZero() && s != "" {
		r.first = r.now()
	}
	return r.chunk(s, toks, false, "", api.Metrics{})
}

// final is the last reply: the rest of the text (all of it when not
// streaming), done_reason, token counts and durations.
func (r *ollamaReply) final(text string, c batching.Chunk) any {
	end := r.now()
	first := r.first
	if first.IsZero() {
		first = end
	}
	return r.chunk(text, c.Tokens, true, c.Finish.String(), api.Metrics{
		TotalDuration:      end.Sub(r.start),
		LoadDuration:       r.loaded.Sub(r.start),
		PromptEvalCount:    c.Usage.PromptTokens,
		PromptEvalDuration: first.Sub(r.submitted),
		EvalCount:          c.Usage.CompletionTokens,
		EvalDuration:       end.Sub(first),
	})
}

// loadReply answers a request without a prompt or messages, as Ollama
// does: the model is loaded (or, with keep_alive 0, to be unloaded).
func (r *ollamaReply) loadReply(keepAlive *api.Duration) any {
	reason := "load"
	if keepAlive != nil && keepAlive.Duration == 0 {
		reason = "unload"
	}
	return r.chunk("", nil, true, reason, api.Metrics{TotalDuration: r.now().Sub(r.start), LoadDuration: r.loaded.Sub(r.start)})
}

// collect waits for the whole generation, noting when its first text came.
func (r *ollamaReply) collect(ctx context.Context, h *batching.Handle) (string, batching.Chunk, error) {
	var text strings.Builder
	var toks []batching.TokenLogprob
	for {
		ch, err := h.Next(ctx)
		if err != nil {
			return "", ch, waitError(err)
		}
		if ch.Text != "" && r.first.IsZero() {
			r.first = r.now()
		}
		text.WriteString(ch.Text)
		toks = append(toks, ch.Tokens...)
		if ch.Done {
			ch.Tokens = toks // the final reply carries all of them
			return text.String(), ch, finishError(ctx, ch)
		}
	}
}
