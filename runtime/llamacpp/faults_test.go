package llamacpp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ollama/ollama/fs/ggml"
	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// patchedModel writes a copy of the test model in which patch has changed
// the data of the named tensor, and returns its path.
func patchedModel(t *testing.T, tensor string, patch func(data []byte, shape []uint64)) string {
	t.Helper()
	valid, err := os.ReadFile(testModel(t))
	if err != nil {
		t.Fatal(err)
	}
	g, err := ggml.Decode(bytes.NewReader(valid), 0)
	if err != nil {
		t.Fatal(err)
	}
	m := bytes.Clone(valid)
	for _, tt := range g.Tensors().Items() {
		if tt.Name == tensor {
			start := g.Tensors().Offset + tt.Offset
			patch(m[start:start+tt.Size()], tt.Shape)
			path := filepath.Join(t.TempDir(), "patched.gguf")
			if err := os.WriteFile(path, m, 0o644); err != nil {
				t.Fatal(err)
			}
			return path
		}
	}
	t.Fatalf("no tensor %s", tensor)
	return ""
}

func openPath(t *testing.T, path string, slots, ctx, step int) *llamacpp.Engine {
	t.Helper()
	e, err := llamacpp.Open(llamacpp.Config{ModelPath: path, Slots: slots, CtxPerSlot: ctx, StepTokens: step, Threads: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// nanHalf is a float16 NaN.
const nanHalf = 0x7e00

// A model whose output norm is NaN (a real llama.cpp failure mode: every
// logit of every row NaN) fails each request with ErrNoFiniteLogit,
// greedy or sampled, cut or not, constrained or not, and the scheduler
// goes on serving. Before the fix nothing noticed: the sampler drew
// token 0 or an arbitrary token until max_tokens (at c74a939, a panic on
// the loop goroutine ended the process).
func TestNaNModelFailsEachRequest(t *testing.T) {
	path := patchedModel(t, "output_norm.weight", func(d []byte, _ []uint64) {
		for i := 0; i+4 <= len(d); i += 4 {
			binary.LittleEndian.PutUint32(d[i:], math.Float32bits(float32(math.NaN())))
		}
	})
	e := openPath(t, path, 2, 256, 32)
	vocab, err := nextaction.NewVocab(e.Pieces(), e.Special(), e.EOGTokens())
	if err != nil {
		t.Fatal(err)
	}
	schema, err := nextaction.NewGrammarCache(0).Schema([]byte(`{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}`), nextaction.DefaultSchemaLimits)
	if err != nil {
		t.Fatal(err)
	}
	s, err := batching.New(e, e, batching.Config{Slots: 2, QueueSize: 8, StepTokens: 32, CtxPerSlot: 256}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	prompt, err := e.Tokenize("The shopper looks at the cart and", false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, mode := range []batching.Sampling{{}, {Temperature: 0.8}, {Temperature: 0.8, TopK: 40}, {Temperature: 1, TopP: 0.9}} {
		for _, constrained := range []bool{false, true} {
			r := batching.Request{Prompt: prompt, MaxTokens: 16, Sampling: mode}
			if constrained {
				r.Constraint = nextaction.NewByteConstraint(vocab, schema)
			}
			h, err := s.Submit(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			c, err := h.Wait(ctx)
			if err != nil || c.Finish != batching.FinishError || !errors.Is(c.Err, batching.ErrNoFiniteLogit) {
				t.Errorf("%+v constrained=%v: %+v %v, want FinishError with ErrNoFiniteLogit", mode, constrained, c, err)
			}
		}
	}
	if st := s.Stats(); st.Running != 0 || st.Waiting != 0 {
		t.Fatalf("the scheduler holds requests after the failures: %+v", st)
	}
}

// Tokens whose logits are NaN in an otherwise finite row are never drawn:
// on a model whose output rows for the clean model's greedy choices are
// NaN, greedy picks another token, and sampling never draws them.
func TestNaNTokensNeverDrawnOnRealEngine(t *testing.T) {
	clean := open(t, 1, 256, 32)
	prompt, err := clean.Tokenize("The shopper looks at the cart and", false)
	if err != nil {
		t.Fatal(err)
	}
	s, err := batching.New(clean, clean, batching.Config{Slots: 1, QueueSize: 4, StepTokens: 32, CtxPerSlot: 256}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	first := func(s *batching.Scheduler, mode batching.Sampling) (int32, batching.Chunk) {
		// One token: its text is the token's piece.
		h, err := s.Submit(context.Background(), batching.Request{Prompt: prompt, MaxTokens: 1, Sampling: mode})
		if err != nil {
			t.Fatal(err)
		}
		c, err := h.Wait(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for tok := range int32(clean.Size()) {
			if clean.Piece(tok) == c.Text && c.Text != "" {
				return tok, c
			}
		}
		return -1, c
	}
	// The tokens the clean model draws first, greedy and sampled hot.
	banned := map[int32]bool{}
	for k := range 40 {
		seed := uint64(k)
		if tok, _ := first(s, batching.Sampling{Temperature: []float64{0, 1.5}[min(k, 1)], Seed: &seed}); tok >= 0 {
			banned[tok] = true
		}
	}
	_ = s.Close(context.Background())
	if len(banned) < 2 {
		t.Fatalf("the clean model draws too few first tokens to test: %v", banned)
	}
	path := patchedModel(t, "output.weight", func(d []byte, shape []uint64) {
		row := int(shape[0]) / 32 * 34 // Q8_0: 32 weights in 34 bytes
		for tok := range banned {
			for b := 0; b < row; b += 34 {
				binary.LittleEndian.PutUint16(d[int(tok)*row+b:], nanHalf)
			}
		}
	})
	e := openPath(t, path, 1, 256, 32)
	// The patched rows are NaN, the others finite.
	for tok, l := range lastRow(t, e, prompt) {
		if isNaN := math.IsNaN(float64(l)); isNaN != banned[int32(tok)] {
			t.Fatalf("token %d: logit %g, NaN tokens %v", tok, l, slices.Sorted(maps.Keys(banned)))
		}
	}
	if err := e.ClearSeq(0); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d NaN tokens: %v", len(banned), slices.Sorted(maps.Keys(banned)))
	s2, err := batching.New(e, e, batching.Config{Slots: 1, QueueSize: 4, StepTokens: 32, CtxPerSlot: 256}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s2.Close(context.Background()) })
	for k := range 40 {
		seed := uint64(k)
		mode := batching.Sampling{Temperature: []float64{0, 1.5}[min(k, 1)], TopK: []int{0, 40}[k%2], Seed: &seed}
		tok, c := first(s2, mode)
		if c.Err != nil || banned[tok] {
			t.Fatalf("%+v: drew %d (%q, %v); NaN tokens %v", mode, tok, c.Text, c.Err, slices.Sorted(maps.Keys(banned)))
		}
	}
}

// Requests that end at admission (a const-only schema: the grammar forces
// its whole output) do not stall the queue behind them: with one slot, a
// normal request and four literal-only ones, all five end with no other
// Submit to wake the scheduler. Before the fix the loop slept after the
// second literal and the last two waited out their deadline.
func TestLiteralOnlyRequestsDoNotStallTheQueue(t *testing.T) {
	e := open(t, 1, 256, 32)
	vocab, err := nextaction.NewVocab(e.Pieces(), e.Special(), e.EOGTokens())
	if err != nil {
		t.Fatal(err)
	}
	grammars := nextaction.NewGrammarCache(0)
	s, err := batching.New(e, e, batching.Config{Slots: 1, QueueSize: 8, StepTokens: 32, CtxPerSlot: 256}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	prompt, err := e.Tokenize("The shopper looks at the cart and", false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	normal, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: 8})
	if err != nil {
		t.Fatal(err)
	}
	var literals []*batching.Handle
	for i := range 4 {
		g, err := grammars.Schema(fmt.Appendf(nil, `{"const":{"step":%d}}`, i), nextaction.DefaultSchemaLimits)
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: 32, Constraint: nextaction.NewByteConstraint(vocab, g)})
		if err != nil {
			t.Fatal(err)
		}
		literals = append(literals, h)
	}
	if c, err := normal.Wait(ctx); err != nil || c.Err != nil {
		t.Fatalf("normal: %+v %v", c, err)
	}
	for i, h := range literals {
		c, err := h.Wait(ctx)
		if want := fmt.Sprintf(`{"step":%d}`, i); err != nil || c.Finish != batching.FinishStop || c.Text != want {
			t.Errorf("literal %d: %+v %v, want %s", i, c, err, want)
		}
	}
}
