package batching

import (
	"context"
	"strings"
	"sync"
	"time"
)

// Chunk is what Handle.Next returns: new text since the last call, and when
// Done is set, how the sequence ended.
type Chunk struct {
	Text   string
	Done   bool
	Finish FinishReason
	// Err is set when Finish is FinishError.
	Err   error
	Usage Usage
	// Tokens are the logprobs of the output tokens since the last call
	// (Request.Logprobs), in order; an end-of-generation token has none.
	// A token's text may come in a later chunk than the token (a UTF-8
	// character split across tokens, a tail that may become a stop
	// string), and the tokens of a stop string are there though its text
	// is not.
	Tokens []TokenLogprob
	// Prompt, in one chunk once the prompt is computed, holds the
	// logprobs of prompt tokens 1 to n-1 (Request.EchoLogprobs; the first
	// token has none).
	Prompt []TokenLogprob
}

// Handle is a caller's view of one submitted request. Its methods are
// goroutine-safe. The loop appends to it without ever blocking.
type Handle struct {
	ctx    context.Context
	cancel context.CancelFunc
	notify chan struct{} // capacity 1: "something changed"
	// prefilled is closed once the prompt is all in the sequence's KV, or
	// the sequence ended (Prefilled).
	prefilled     chan struct{}
	prefilledOnce sync.Once

	mu      sync.Mutex
	pending strings.Builder
	toks    []TokenLogprob
	prompt  []TokenLogprob
	done    bool
	final   Chunk
	firstAt time.Time // when the first text was emitted

	// Set by track before the handle reaches the loop; read-only after.
	now      func() time.Time
	onFinish func(final Chunk, firstText time.Time)
}

// track makes the handle time its first text and call onFinish once it has
// ended, before its reader is woken.
func (h *Handle) track(now func() time.Time, onFinish func(Chunk, time.Time)) {
	h.now, h.onFinish = now, onFinish
}

func newHandle(ctx context.Context) *Handle {
	ctx, cancel := context.WithCancel(ctx)
	return &Handle{ctx: ctx, cancel: cancel, notify: make(chan struct{}, 1), prefilled: make(chan struct{})}
}

// Prefilled is closed once the request's prompt is all in its sequence's
// KV (so a request with the same prompt submitted from then on copies it
// instead of computing it, with the prefix cache on), or the request
// ended, whichever comes first.
func (h *Handle) Prefilled() <-chan struct{} { return h.prefilled }

// markPrefilled closes Prefilled's channel, once.
func (h *Handle) markPrefilled() { h.prefilledOnce.Do(func() { close(h.prefilled) }) }

// Cancel ends the request; its slot is freed at the next step. Idempotent.
func (h *Handle) Cancel() { h.cancel() }

// Next blocks until there is new text or the sequence ended, or ctx ends.
// After a Chunk with Done set, further calls return the same final Chunk
// with no text.
func (h *Handle) Next(ctx context.Context) (Chunk, error) {
	for {
		h.mu.Lock()
		if h.pending.Len() > 0 || h.done || len(h.toks) > 0 || len(h.prompt) > 0 {
			c := h.final
			c.Text = h.pending.String()
			h.pending.Reset()
			c.Done = h.done
			if !h.done {
				c = Chunk{Text: c.Text}
			}
			c.Tokens, c.Prompt = h.toks, h.prompt
			h.toks, h.prompt = nil, nil
			h.mu.Unlock()
			return c, nil
		}
		h.mu.Unlock()
		select {
		case <-h.notify:
		case <-ctx.Done():
			return Chunk{}, ctx.Err()
		}
	}
}

// Wait collects the whole output: all text, token and prompt logprobs, and
// the final chunk.
func (h *Handle) Wait(ctx context.Context) (Chunk, error) {
	var b strings.Builder
	var toks, prompt []TokenLogprob
	for {
		c, err := h.Next(ctx)
		if err != nil {
			return Chunk{}, err
		}
		b.WriteString(c.Text)
		toks = append(toks, c.Tokens...)
		prompt = append(prompt, c.Prompt...)
		if c.Done {
			c.Text, c.Tokens, c.Prompt = b.String(), toks, prompt
			return c, nil
		}
	}
}

// emitWith appends text and, when lp is not nil, a token's logprobs, both
// visible at once; called only by the goroutine that owns the sequence in
// this step (the loop, or the sampling worker it handed the sequence to),
// never by the caller.
func (h *Handle) emitWith(text string, lp *TokenLogprob) {
	if text == "" && lp == nil {
		return
	}
	h.mu.Lock()
	if lp != nil {
		h.toks = append(h.toks, *lp)
	}
	h.pending.WriteString(text)
	if text != "" && h.firstAt.IsZero() && h.now != nil {
		h.firstAt = h.now()
	}
	h.mu.Unlock()
	h.wake()
}

// finish records the end, once, from the scheduler's side (the loop,
// a sampling worker of the step, or admission dropping a queued request). The end hook
// (accounting, metrics) runs before the end is visible, so a caller that
// has its answer finds it counted.
func (h *Handle) finish(text string, reason FinishReason, err error, u Usage) {
	final := Chunk{Done: true, Finish: reason, Err: err, Usage: u}
	h.mu.Lock()
	first := h.firstAt
	h.mu.Unlock()
	if first.IsZero() && text != "" && h.now != nil {
		first = h.now()
	}
	if h.onFinish != nil {
		h.onFinish(final, first)
	}
	h.mu.Lock()
	h.pending.WriteString(text)
	h.done, h.final, h.firstAt = true, final, first
	h.mu.Unlock()
	h.cancel() // release the derived context's resources
	h.markPrefilled()
	h.wake()
}

// setPrompt hands out the prompt's logprobs (echo), once; called as
// emitWith is. A one-token prompt has none, and wakes no reader.
func (h *Handle) setPrompt(lps []TokenLogprob) {
	h.mu.Lock()
	h.prompt = lps
	h.mu.Unlock()
	h.wake()
}

func (h *Handle) wake() {
	select {
	case h.notify <- struct{}{}:
	default:
	}
}
