package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/internal/jsonstr"
)

// defaultKeepAlive is how often a stream that has produced no text yet (it
// waits in the queue or its prompt is being read) writes an SSE comment, so
// that a client that went away is noticed and its request cancelled.
const defaultKeepAlive = 5 * time.Second

var (
	keepAliveEvent = []byte(": keep-alive\n\n")
	doneEvent      = []byte("data: [DONE]\n\n")
	errClientGone  = errors.New("client went away")
)

// startStream answers with a stream written by run, which fasthttp runs
// on its own goroutine after the handler returns; run must call the done
// function it is given (setDone) once it ends. contentType is the
// stream's media type (text/event-stream for /v1, NDJSON for /api).
func (s *Server) startStream(c *fiber.Ctx, contentType string, setDone func(func()), run func(*bufio.Writer)) {
	c.Set(fiber.HeaderContentType, contentType)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	s.inflight.add()
	setDone(s.inflight.done)
	c.Context().SetBodyStreamWriter(run)
}

// frames renders one stream's wire format: SSE events for /v1
// (sseFrames), NDJSON lines for the Ollama API (ollamaFrames). The slices
// returned are valid until the next call. Not goroutine-safe: one stream
// owns it.
type frames interface {
	// start is written first; nil for none.
	start() []byte
	// text carries generated text and the logprobs of toks, the tokens
	// that came with it (none when the request asked for none; a format
	// without logprobs ignores them).
	text(s string, toks []batching.TokenLogprob) []byte
	// keepAlive is written while no text has come yet, so that a client
	// that went away is noticed.
	keepAlive() []byte
	// end closes a stream whose generation finished (stop or length).
	end(c batching.Chunk) []byte
	// fail closes a stream with err.
	fail(err error) []byte
}

// stream writes one generation. It holds no *fiber.Ctx: everything it
// needs is copied in by the handler.
type stream struct {
	log       *zap.Logger
	h         *batching.Handle
	ctx       context.Context // the request's deadline
	cancel    context.CancelFunc
	frames    frames
	keepAlive time.Duration
	done      func()
	// release, when set, is called once the stream has ended (the model's
	// lease, see acquire).
	release func()
	gotText bool
}

// run is the fasthttp stream writer. It returns on the first failed write,
// cancelling the generation, since fasthttp reports a gone client no other
// way.
func (st *stream) run(w *bufio.Writer) {
	defer st.done()
	if st.release != nil {
		defer st.release()
	}
	defer st.cancel()
	defer func() {
		if r := recover(); r != nil {
			st.h.Cancel()
			st.log.Error("panic in stream writer", zap.Any("panic", r), zap.Stack("stack"))
		}
	}()
	if first := st.frames.start(); first != nil && !st.write(w, first) {
		return
	}
	for {
		c, err := st.next(w)
		switch {
		case errors.Is(err, errClientGone):
			return
		case err != nil:
			st.write(w, st.frames.fail(waitError(err)))
			return
		}
		if c.Text != "" || len(c.Tokens) > 0 {
			st.gotText = true
			if !st.write(w, st.frames.text(c.Text, c.Tokens)) {
				return
			}
		}
		if c.Done {
			st.finish(w, c)
			return
		}
	}
}

// next waits for text. Until the first text it wakes every keepAlive to
// write a keep-alive frame.
func (st *stream) next(w *bufio.Writer) (batching.Chunk, error) {
	if st.gotText {
		return st.h.Next(st.ctx)
	}
	for {
		ctx, cancel := context.WithTimeout(st.ctx, st.keepAlive)
		c, err := st.h.Next(ctx)
		cancel()
		if err == nil {
			return c, nil
		}
		if err := st.ctx.Err(); err != nil {
			return c, err
		}
		if !st.write(w, st.frames.keepAlive()) {
			return c, errClientGone
		}
	}
}

func (st *stream) finish(w *bufio.Writer, c batching.Chunk) {
	if err := finishError(st.ctx, c); err != nil {
		st.write(w, st.frames.fail(err))
		return
	}
	st.write(w, st.frames.end(c))
}

// write sends b and flushes it; on failure the client is gone and the
// generation is cancelled.
func (st *stream) write(w *bufio.Writer, b []byte) bool {
	if _, err := w.Write(b); err == nil {
		if err = w.Flush(); err == nil {
			return true
		}
	}
	st.h.Cancel()
	return false
}

// sseFrames are /v1's Server-Sent Events: OpenAI's chunks, then [DONE].
type sseFrames struct {
	events       *eventFormat
	includeUsage bool
	errorEvent   func(error) []byte
	buf          []byte
}

var _ frames = (*sseFrames)(nil)

func (f *sseFrames) start() []byte { return f.events.role() }
func (f *sseFrames) text(s string, toks []batching.TokenLogprob) []byte {
	return f.events.content(s, toks)
}
func (f *sseFrames) keepAlive() []byte     { return keepAliveEvent }
func (f *sseFrames) fail(err error) []byte { return append(f.errorEvent(err), doneEvent...) }

// end is the finish event, the usage event when asked for, and [DONE].
func (f *sseFrames) end(c batching.Chunk) []byte {
	f.buf = append(f.buf[:0], f.events.finish(c.Finish.String())...)
	if f.includeUsage {
		f.buf = append(f.buf, f.events.usage(c.Usage)...)
	}
	return append(f.buf, doneEvent...)
}

// errorEvent renders err as a data event in OpenAI's error shape.
func (s *Server) errorEvent(err error) []byte {
	f, internal := s.httpError(err)
	if internal {
		s.log.Error("stream failed", zap.Error(err))
	}
	b, merr := json.Marshal(f.body)
	if merr != nil {
		b = []byte(`{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}`)
	}
	out := make([]byte, 0, len(b)+8)
	out = append(out, "data: "...)
	out = append(out, b...)
	return append(out, "\n\n"...)
}

// eventFormat renders stream events. The fixed parts of each event are
// built once, so a token costs one escape of its text and one copy. Not
// goroutine-safe: one stream owns it.
type eventFormat struct {
	head     []byte // data: {"id":…,"object":…,"created":…,"model":…
	open     []byte // head and the choice up to the text's value
	close    []byte // after the text's value to the end of the event
	finishAt []byte // head and the choice up to the finish reason's value
	tail     []byte // the end of every choice event
	roleEv   []byte // chat's first event; nil for text completions
	buf      []byte
	// lp renders the logprobs of a text event (nil: none asked); lpAt and
	// lpEnd surround them.
	lp          *streamLogprobs
	lpAt, lpEnd []byte
}

func newEventFormat(m responseMeta, includeUsage bool) *eventFormat {
	return newEventFormatAt(m, includeUsage, 0)
}

// newEventFormatAt renders the events of choice index.
func newEventFormatAt(m responseMeta, includeUsage bool, index int) *eventFormat {
	object, textKey, textEnd, emptyText := "chat.completion.chunk", `"delta":{"content":`, `}`, `"delta":{}`
	if m.kind == textEndpoint {
		object, textKey, textEnd, emptyText = "text_completion", `"text":`, ``, `"text":""`
	}
	tail := "}\n\n"
	if includeUsage {
		// OpenAI sends "usage":null on every chunk but the usage chunk.
		tail = `,"usage":null}` + "\n\n"
	}
	head := []byte(`data: {"id":`)
	head = jsonstr.Append(head, m.id)
	head = append(head, `,"object":"`+object+`","created":`...)
	head = strconv.AppendInt(head, m.created, 10)
	head = append(head, `,"model":`...)
	head = jsonstr.Append(head, m.model)
	choice := string(head) + `,"choices":[{"index":` + strconv.Itoa(index) + `,`
	f := &eventFormat{
		head:     head,
		open:     []byte(choice + textKey),
		close:    []byte(textEnd + `,"logprobs":null,"finish_reason":null}]` + tail),
		lpAt:     []byte(textEnd + `,"logprobs":`),
		lpEnd:    []byte(`,"finish_reason":null}]` + tail),
		finishAt: []byte(choice + emptyText + `,"logprobs":null,"finish_reason":`),
		tail:     []byte(tail),
	}
	if m.kind == chatEndpoint {
		f.roleEv = []byte(choice + `"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]` + tail)
	}
	return f
}

// role is the first event of a chat stream, nil for text completions.
func (f *eventFormat) role() []byte { return f.roleEv }

// content is an event carrying text, and the logprobs of toks when they
// were asked for.
func (f *eventFormat) content(text string, toks []batching.TokenLogprob) []byte {
	f.buf = append(f.buf[:0], f.open...)
	f.buf = jsonstr.Append(f.buf, text)
	if f.lp == nil {
		f.buf = append(f.buf, f.close...)
		return f.buf
	}
	f.buf = append(f.buf, f.lpAt...)
	f.buf = f.lp.render(f.buf, toks)
	f.buf = append(f.buf, f.lpEnd...)
	return f.buf
}

// finish is the last choice event: no text, and the finish reason.
func (f *eventFormat) finish(reason string) []byte {
	f.buf = append(f.buf[:0], f.finishAt...)
	f.buf = jsonstr.Append(f.buf, reason)
	f.buf = append(f.buf, `}]`...)
	f.buf = append(f.buf, f.tail...)
	return f.buf
}

// usage is the event after the last choice when include_usage is set.
func (f *eventFormat) usage(u batching.Usage) []byte {
	f.buf = append(f.buf[:0], f.head...)
	f.buf = append(f.buf, `,"choices":[],"usage":{"prompt_tokens":`...)
	f.buf = strconv.AppendInt(f.buf, int64(u.PromptTokens), 10)
	f.buf = append(f.buf, `,"completion_tokens":`...)
	f.buf = strconv.AppendInt(f.buf, int64(u.CompletionTokens), 10)
	f.buf = append(f.buf, `,"total_tokens":`...)
	f.buf = strconv.AppendInt(f.buf, int64(u.PromptTokens+u.CompletionTokens), 10)
	f.buf = append(f.buf, `,"prompt_tokens_details":{"cached_tokens":`...)
	f.buf = strconv.AppendInt(f.buf, int64(u.CachedTokens), 10)
	f.buf = append(f.buf, "}}}\n\n"...)
	return f.buf
}

// inflight counts running stream writers; Shutdown waits for none.
type inflight struct {
	mu      sync.Mutex
	n       int
	waiters []chan struct{}
}

func (f *inflight) add() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		for _, ch := range f.waiters {
			close(ch)
		}
		f.waiters = nil
	}
}

// idle returns a channel closed once no stream is running.
func (f *inflight) idle() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	if f.n == 0 {
		close(ch)
	} else {
		f.waiters = append(f.waiters, ch)
	}
	return ch
}
