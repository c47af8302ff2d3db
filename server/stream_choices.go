package server

import (
	"bufio"
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/batching"
)

// choicesStream writes the SSE stream of one prompt's n choices (n above
// 1): every choice's events carry its index, in the order its text comes;
// each choice ends with its own finish event; then the usage event (the
// prompt counted once) when asked for, and [DONE]. A failure of any choice
// ends the stream with the error event and cancels the others. It holds
// no *fiber.Ctx.
type choicesStream struct {
	log          *zap.Logger
	hs           []*batching.Handle
	ctx          context.Context // the request's deadline
	cancel       context.CancelFunc
	formats      []*eventFormat // by choice
	includeUsage bool
	errorEvent   func(error) []byte
	keepAlive    time.Duration
	done         func()
	release      func() // the model's lease; nil for none
}

// choiceEvent is what a choice's reader hands the writer.
type choiceEvent struct {
	j   int
	c   batching.Chunk
	err error
}

// run is the fasthttp stream writer: one reader goroutine per choice
// feeds it; it returns on the first failed write, cancelling every choice.
func (cs *choicesStream) run(w *bufio.Writer) {
	defer cs.done()
	if cs.release != nil {
		defer cs.release()
	}
	quit := make(chan struct{})
	defer close(quit) // readers blocked on a send return
	defer cs.cancelAll()
	defer func() {
		if r := recover(); r != nil {
			cs.log.Error("panic in stream writer", zap.Any("panic", r), zap.Stack("stack"))
		}
	}()
	events := make(chan choiceEvent, len(cs.hs))
	for j, h := range cs.hs {
		go cs.read(j, h, events, quit)
	}
	write := func(b []byte) bool {
		if _, err := w.Write(b); err != nil {
			return false
		}
		return w.Flush() == nil
	}
	for _, f := range cs.formats {
		if ev := f.role(); ev != nil && !write(ev) {
			return
		}
	}
	var usage batching.Usage
	left, gotText := len(cs.hs), false
	for left > 0 {
		var e choiceEvent
		if gotText {
			e = <-events
		} else {
			select {
			case e = <-events:
			case <-time.After(cs.keepAlive):
				if !write(keepAliveEvent) {
					return
				}
				continue
			}
		}
		if e.err == nil && e.c.Done {
			e.err = finishError(cs.ctx, e.c)
		}
		if e.err != nil {
			write(append(cs.errorEvent(waitError(e.err)), doneEvent...))
			return
		}
		f := cs.formats[e.j]
		if e.c.Text != "" || len(e.c.Tokens) > 0 {
			gotText = true
			if !write(f.content(e.c.Text, e.c.Tokens)) {
				return
			}
		}
		if e.c.Done {
			left--
			usage.CompletionTokens += e.c.Usage.CompletionTokens
			if e.j == 0 { // the forks copied its prompt: counted once
				usage.PromptTokens, usage.CachedTokens = e.c.Usage.PromptTokens, e.c.Usage.CachedTokens
			}
			if !write(f.finish(e.c.Finish.String())) {
				return
			}
		}
	}
	if cs.includeUsage && !write(cs.formats[0].usage(usage)) {
		return
	}
	write(doneEvent)
}

// read hands choice j's chunks to the writer until it ends.
func (cs *choicesStream) read(j int, h *batching.Handle, events chan<- choiceEvent, quit <-chan struct{}) {
	for {
		c, err := h.Next(cs.ctx)
		select {
		case events <- choiceEvent{j: j, c: c, err: err}:
		case <-quit:
			return
		}
		if err != nil || c.Done {
			return
		}
	}
}

func (cs *choicesStream) cancelAll() {
	cancelHandles(cs.hs)
	cs.cancel()
}
