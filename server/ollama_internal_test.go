package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/batchingtest"
	"github.com/nextact/nextact/models"
)

type byteTokenizer struct{}

func (byteTokenizer) Tokenize(text string, _ bool) ([]int32, error) {
	out := make([]int32, len(text))
	for i := range len(text) {
		out[i] = int32(text[i])
	}
	return out, nil
}

type refusingGenerator struct{}

func (refusingGenerator) Submit(context.Context, batching.Request) (*batching.Handle, error) {
	return nil, batching.ErrClosed
}

// A stream releases its model's lease exactly once: when it has ended
// (after its last line), or at once when its submission fails.
func TestStreamReleasesItsLease(t *testing.T) {
	t.Parallel()
	bm := batchingtest.NewModel(300, []int32{256}, batchingtest.WalkNext(256, 0))
	sched, err := batching.New(bm.Engine(), bm, batching.Config{Slots: 1, QueueSize: 2, StepTokens: 64, CtxPerSlot: 256}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sched.Close(ctx)
	})
	m := &Model{ID: "m", ContextLength: 256, Format: models.FormatLlama3, Tokenizer: byteTokenizer{}, Generator: sched}
	refusing := &Model{ID: "r", ContextLength: 256, Format: models.FormatLlama3, Tokenizer: byteTokenizer{}, Generator: refusingGenerator{}}
	s, err := New(Config{}, Deps{Models: []*Model{m, refusing}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	var released, linesAtRelease atomic.Int32
	var lines atomic.Int32
	s.app.Post("/lease/:model", func(c *fiber.Ctx) error {
		ctx, cancel := s.requestContext(c)
		defer cancel()
		model, release, err := s.acquire(c, c.Params("model"))
		if err != nil {
			return err
		}
		release() // a static model: the lease is nothing to hold
		r := &ollamaReply{kind: ollamaGenerateKind, model: model.ID, now: time.Now, start: time.Now()}
		f := &countingFrames{ollamaFrames: ollamaFrames{reply: r, errorMessage: s.ollamaErrorMessage}, lines: &lines}
		req := batching.Request{Prompt: []int32{'a', 'b'}, MaxTokens: 5}
		return s.startGeneration(ctx, c, model, req, "application/x-ndjson", f, func() {
			released.Add(1)
			linesAtRelease.Store(lines.Load())
		})
	})

	resp, err := s.app.Test(httptestRequest("/lease/m"), 10000)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"done":true`) {
		t.Fatalf("stream: %d %s", resp.StatusCode, body)
	}
	if released.Load() != 1 || linesAtRelease.Load() != lines.Load() {
		t.Errorf("released %d times, after %d of %d lines", released.Load(), linesAtRelease.Load(), lines.Load())
	}

	resp, err = s.app.Test(httptestRequest("/lease/r"), 10000)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || released.Load() != 2 {
		t.Errorf("refused submission: status %d, released %d times in all (want 2)", resp.StatusCode, released.Load())
	}
}

// countingFrames counts the lines written.
type countingFrames struct {
	ollamaFrames
	lines *atomic.Int32
}

func (f *countingFrames) text(s string, toks []batching.TokenLogprob) []byte {
	f.lines.Add(1)
	return f.ollamaFrames.text(s, toks)
}
func (f *countingFrames) end(c batching.Chunk) []byte { f.lines.Add(1); return f.ollamaFrames.end(c) }

func httptestRequest(path string) *http.Request {
	req, err := http.NewRequest(http.MethodPost, path, nil)
	if err != nil {
		panic(errors.New("bad test request"))
	}
	return req
}
