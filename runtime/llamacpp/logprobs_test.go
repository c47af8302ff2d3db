package llamacpp_test

import (
	"context"
	"errors"
	"math"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// lpScheduler is a scheduler on a fresh engine of the generated model.
func lpScheduler(t *testing.T, slots, step int) (*llamacpp.Engine, *batching.Scheduler) {
	t.Helper()
	e := open(t, slots, 512, step)
	s, err := batching.New(e, e, batching.Config{Slots: slots, QueueSize: 32, StepTokens: step, CtxPerSlot: 512}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return e, s
}

// run submits r and waits for its whole output.
func run(t *testing.T, s *batching.Scheduler, r batching.Request) batching.Chunk {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := s.Submit(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	c, err := h.Wait(ctx)
	if err != nil || c.Err != nil {
		t.Fatalf("wait: %v %v", err, c.Err)
	}
	return c
}

func tokens(t *testing.T, e *llamacpp.Engine, text string) []int32 {
	t.Helper()
	p, err := e.Tokenize(text, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// logSoftmax decodes prompt alone on e (sequence 0, cleared first) and
// returns the log-softmax of its last position's row, in float64 over the
// whole row: the reference the scheduler's logprobs are checked against.
func logSoftmax(t *testing.T, e *llamacpp.Engine, prompt []int32) []float64 {
	t.Helper()
	if err := e.ClearSeq(0); err != nil {
		t.Fatal(err)
	}
	row := lastRow(t, e, prompt)
	m := math.Inf(-1)
	for _, l := range row {
		m = max(m, float64(l))
	}
	var sum float64
	for _, l := range row {
		sum += math.Exp(float64(l) - m)
	}
	out := make([]float64, len(row))
	for i, l := range row {
		out[i] = float64(l) - m - math.Log(sum)
	}
	return out
}

// lastRow decodes prompt as sequence 0 (empty) of e and returns the logits
// row of its last position.
func lastRow(t *testing.T, e *llamacpp.Engine, prompt []int32) []float32 {
	t.Helper()
	var b batching.Batch
	for i, tok := range prompt {
		b.Add(tok, int32(i), 0, i == len(prompt)-1)
	}
	if err := e.Decode(&b); err != nil {
		t.Fatal(err)
	}
	row, err := e.Logits(len(prompt) - 1)
	if err != nil {
		t.Fatal(err)
	}
	return row
}

// repeated tokenizes phrase repeated to at least min tokens.
func repeated(t *testing.T, e *llamacpp.Engine, phrase string, min int) []int32 {
	t.Helper()
	text := phrase
	for {
		toks := tokens(t, e, text)
		if len(toks) >= min {
			return toks
		}
		text += phrase
	}
}

// checkDistribution checks one token's logprobs: top sorted best first
// (then by id), k of them, the mass of the top at most 1, the token's
// logprob equal to its top entry when it is there, everything finite.
func checkDistribution(t *testing.T, what string, lp batching.TokenLogprob, k int) {
	t.Helper()
	if len(lp.Top) != k {
		t.Fatalf("%s: %d top entries, want %d", what, len(lp.Top), k)
	}
	var mass float64
	for i, c := range lp.Top {
		if math.IsNaN(float64(c.Logprob)) || math.IsInf(float64(c.Logprob), 0) || c.Logprob > 0 {
			t.Fatalf("%s: top[%d] logprob %v", what, i, c.Logprob)
		}
		if i > 0 && (c.Logprob > lp.Top[i-1].Logprob || c.Logprob == lp.Top[i-1].Logprob && c.ID < lp.Top[i-1].ID) {
			t.Fatalf("%s: top not sorted at %d: %+v", what, i, lp.Top)
		}
		if c.ID == lp.ID && c.Logprob != lp.Logprob {
			t.Fatalf("%s: token %d logprob %v, its top entry %v", what, lp.ID, lp.Logprob, c.Logprob)
		}
		mass += math.Exp(float64(c.Logprob))
	}
	if mass > 1+1e-5 {
		t.Fatalf("%s: the top holds %v of the mass", what, mass)
	}
	if math.IsNaN(float64(lp.Logprob)) || lp.Logprob > 0 || math.IsInf(float64(lp.Logprob), 0) {
		t.Fatalf("%s: logprob %v", what, lp.Logprob)
	}
}

// The logprobs of generated tokens are the log-softmax of the raw row: the
// first token's (and its top 20) equal a float64 log-softmax of the
// engine's row computed here; greedy tokens are the top-1; sampled ones
// (temperature, top-k, top-p) have their top entry's logprob, and their
// logprob is that of the raw row, not of the cut distribution.
func TestLogprobsAreTheRawLogSoftmax(t *testing.T) {
	e, s := lpScheduler(t, 2, 64)
	ref := open(t, 1, 512, 64)
	prompt := tokens(t, e, "The shopper looks at the cart and")
	want := logSoftmax(t, ref, prompt)
	seed := uint64(7)
	for _, p := range []batching.Sampling{{}, {Temperature: 1.3, Seed: &seed}, {Temperature: 0.8, TopK: 3, TopP: 0.5, Seed: &seed}} {
		c := run(t, s, batching.Request{Prompt: prompt, MaxTokens: 12, Sampling: p, Logprobs: true, TopLogprobs: 20})
		if len(c.Tokens) == 0 || len(c.Tokens) > c.Usage.CompletionTokens {
			t.Fatalf("%+v: %d token logprobs for %d tokens", p, len(c.Tokens), c.Usage.CompletionTokens)
		}
		var text string
		for i, lp := range c.Tokens {
			checkDistribution(t, "token", lp, 20)
			if p.Temperature == 0 && lp.Top[0].ID != lp.ID {
				t.Fatalf("greedy token %d is not the top-1 %+v", lp.ID, lp.Top[0])
			}
			if i == 0 {
				if d := math.Abs(float64(lp.Logprob) - want[lp.ID]); d > 1e-4 {
					t.Fatalf("%+v: first token %d logprob %v, log-softmax %v", p, lp.ID, lp.Logprob, want[lp.ID])
				}
				for _, c := range lp.Top {
					if d := math.Abs(float64(c.Logprob) - want[c.ID]); d > 1e-4 {
						t.Fatalf("top token %d logprob %v, log-softmax %v", c.ID, c.Logprob, want[c.ID])
					}
				}
			}
			text += e.Piece(lp.ID)
		}
		if c.Finish == batching.FinishLength && text != c.Text {
			t.Fatalf("token pieces %q, text %q", text, c.Text)
		}
	}
	// Without logprobs there are none; with top 0, no top entries.
	if c := run(t, s, batching.Request{Prompt: prompt, MaxTokens: 4}); c.Tokens != nil || c.Prompt != nil {
		t.Fatalf("logprobs without asking: %+v", c)
	}
	c := run(t, s, batching.Request{Prompt: prompt, MaxTokens: 4, Logprobs: true})
	for _, lp := range c.Tokens {
		checkDistribution(t, "token", lp, 0)
	}
}

// The same requests' logprobs alone and among 7 others, joining while they
// decode, are equal bit for bit (the CPU engine is batch-invariant).
func TestLogprobsBatchedEqualSolo(t *testing.T) {
	e, s := lpScheduler(t, 8, 32)
	texts := []string{"hello", "The shopper looks at the cart and decides", `{"type":"click","name":"`, "z",
		"refinements.customer_reviews.4_stars_up is a filter; a long prompt spans several chunks", "hello", "café au lait", "Buy now"}
	seed := func(x uint64) *uint64 { return &x }
	reqs := make([]batching.Request, len(texts))
	for i, tx := range texts {
		p := batching.Sampling{}
		if i%2 == 1 {
			p = batching.Sampling{Temperature: 1, TopK: 40, Seed: seed(uint64(i))}
		}
		reqs[i] = batching.Request{Prompt: tokens(t, e, tx), MaxTokens: 16, Sampling: p, Logprobs: true, TopLogprobs: 5}
	}
	alone := make([]batching.Chunk, len(reqs))
	for i, r := range reqs {
		alone[i] = run(t, s, r)
	}
	together := make([]batching.Chunk, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i >= 4 {
				time.Sleep(time.Duration(i-3) * 10 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			h, err := s.Submit(ctx, r)
			if err != nil {
				t.Error(err)
				return
			}
			together[i], _ = h.Wait(ctx)
		}()
	}
	wg.Wait()
	for i := range reqs {
		if len(alone[i].Tokens) == 0 || !reflect.DeepEqual(alone[i].Tokens, together[i].Tokens) {
			t.Errorf("request %d: alone %+v\nbatched %+v", i, alone[i].Tokens, together[i].Tokens)
		}
	}
}

// Echo scores a prompt: the logprob of token t after prompt P is the
// logprob generation gives t after P (prompt scoring is consistent with
// generation), every prompt position is computed even when the prefix
// cache holds the prompt, and a prompt-only request ends after its prompt
// with FinishLength and nothing generated.
func TestEchoLogprobsMatchGeneration(t *testing.T) {
	e, s := lpScheduler(t, 2, 16)
	prompt := tokens(t, e, "The shopper looks at the cart and decides what")
	gen := run(t, s, batching.Request{Prompt: prompt, MaxTokens: 8, Logprobs: true, TopLogprobs: 3})
	if len(gen.Tokens) < 3 {
		t.Fatalf("generated %d tokens", len(gen.Tokens))
	}
	full := append([]int32(nil), prompt...)
	for _, lp := range gen.Tokens {
		full = append(full, lp.ID)
	}
	for round := range 2 { // the second finds the prompt in the prefix cache
		c := run(t, s, batching.Request{Prompt: full, Logprobs: true, TopLogprobs: 3, EchoLogprobs: true, ScoreOnly: true})
		if c.Finish != batching.FinishLength || c.Usage.CompletionTokens != 0 || c.Text != "" || len(c.Tokens) != 0 {
			t.Fatalf("round %d: prompt-only request: %+v", round, c)
		}
		if c.Usage.CachedTokens != 0 {
			t.Fatalf("round %d: echo reused %d cached tokens", round, c.Usage.CachedTokens)
		}
		if len(c.Prompt) != len(full)-1 {
			t.Fatalf("round %d: %d prompt logprobs for %d tokens", round, len(c.Prompt), len(full))
		}
		for i, lp := range c.Prompt {
			if lp.ID != full[i+1] {
				t.Fatalf("prompt logprob %d is for token %d, want %d", i, lp.ID, full[i+1])
			}
			checkDistribution(t, "prompt token", lp, 3)
		}
		for k, g := range gen.Tokens {
			p := c.Prompt[len(prompt)-1+k]
			if math.Abs(float64(p.Logprob-g.Logprob)) > 1e-4 || p.Top[0].ID != g.Top[0].ID {
				t.Fatalf("token %d: scored %+v, generated %+v", k, p, g)
			}
		}
	}
	// Echo with generation: prompt logprobs and token logprobs both.
	c := run(t, s, batching.Request{Prompt: prompt, MaxTokens: 3, Logprobs: true, EchoLogprobs: true})
	if len(c.Prompt) != len(prompt)-1 || len(c.Tokens) != 3 {
		t.Fatalf("echo and generate: %d prompt, %d token logprobs", len(c.Prompt), len(c.Tokens))
	}
}

// A prompt longer than one step's scoring rows is scored over several
// steps, every position once.
func TestEchoLongPromptOverSeveralSteps(t *testing.T) {
	e, s := lpScheduler(t, 1, 400)
	prompt := repeated(t, e, "the shopper looks at shirts, then the cart; ", 300)[:300]
	c := run(t, s, batching.Request{Prompt: prompt, EchoLogprobs: true, ScoreOnly: true})
	if len(c.Prompt) != len(prompt)-1 {
		t.Fatalf("%d prompt logprobs for %d tokens", len(c.Prompt), len(prompt))
	}
	for i, lp := range c.Prompt {
		if lp.ID != prompt[i+1] || lp.Top != nil {
			t.Fatalf("position %d: %+v", i, lp)
		}
		checkDistribution(t, "prompt token", lp, 0)
	}
}

// With logprobs, a constraint's forced tokens are fed one by one, each
// with its own logprob: every output token has one, and the output is the
// same as without logprobs (greedy).
func TestLogprobsUnderForcingConstraint(t *testing.T) {
	e, s := lpScheduler(t, 2, 64)
	vocab, err := nextaction.NewVocab(e.Pieces(), e.Special(), e.EOGTokens())
	if err != nil {
		t.Fatal(err)
	}
	grammars := nextaction.NewGrammarCache(0)
	schema, err := grammars.Schema([]byte(`{"type":"object","properties":{"name":{"type":"string","maxLength":12},"n":{"type":"integer"}},"required":["name","n"]}`), nextaction.DefaultSchemaLimits)
	if err != nil {
		t.Fatal(err)
	}
	literal, err := grammars.Schema([]byte(`{"const":{"type":"click"}}`), nextaction.DefaultSchemaLimits)
	if err != nil {
		t.Fatal(err)
	}
	prompt := tokens(t, e, `{"type":"click","name":"`)
	for _, g := range []*nextaction.Grammar{schema, literal} {
		plain := run(t, s, batching.Request{Prompt: prompt, MaxTokens: 64, Constraint: nextaction.NewByteConstraint(vocab, g)})
		c := run(t, s, batching.Request{Prompt: prompt, MaxTokens: 64, Constraint: nextaction.NewByteConstraint(vocab, g), Logprobs: true, TopLogprobs: 2})
		if c.Text != plain.Text || c.Finish != plain.Finish {
			t.Fatalf("with logprobs %q (%v), without %q (%v)", c.Text, c.Finish, plain.Text, plain.Finish)
		}
		var text string
		for _, lp := range c.Tokens {
			checkDistribution(t, "constrained token", lp, 2)
			text += e.Piece(lp.ID)
		}
		if text != c.Text {
			t.Fatalf("token pieces %q, text %q", text, c.Text)
		}
		eog := c.Usage.CompletionTokens - len(c.Tokens)
		if eog < 0 || eog > 1 {
			t.Fatalf("%d token logprobs for %d tokens", len(c.Tokens), c.Usage.CompletionTokens)
		}
	}
}

// Bounds: top logprobs in [0, 20], top logprobs only with logprobs, a
// prompt-only request asks for no tokens.
func TestLogprobsBounds(t *testing.T) {
	e, s := lpScheduler(t, 1, 16)
	prompt := tokens(t, e, "hello")
	for _, r := range []batching.Request{
		{Prompt: prompt, MaxTokens: 2, Logprobs: true, TopLogprobs: 21},
		{Prompt: prompt, MaxTokens: 2, Logprobs: true, TopLogprobs: -1},
		{Prompt: prompt, MaxTokens: 2, TopLogprobs: 2},
		{Prompt: prompt, MaxTokens: 2, ScoreOnly: true},
	} {
		_, err := s.Submit(context.Background(), r)
		var re *batching.RequestError
		if !errors.As(err, &re) {
			t.Fatalf("%+v: %v, want a RequestError", r, err)
		}
	}
}

// Three echo requests whose prompts together need more scoring rows than
// one step reads: each position is scored once, and the logprobs equal
// those of each request alone.
func TestEchoConcurrentOverScoringRows(t *testing.T) {
	e, s := lpScheduler(t, 3, 512)
	all := repeated(t, e, "a shopper compares shirts, reads reviews and fills the cart; ", 320)
	// The first is read over two steps (256 rows, then 44), the other two
	// join at the second, where only 212 rows are left for both.
	prompts := [][]int32{all[:300], all[10:310], all[20:320]}
	alone := make([]batching.Chunk, len(prompts))
	for i, p := range prompts {
		alone[i] = run(t, s, batching.Request{Prompt: p, EchoLogprobs: true, ScoreOnly: true})
	}
	together := make([]batching.Chunk, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			h, err := s.Submit(ctx, batching.Request{Prompt: p, EchoLogprobs: true, ScoreOnly: true})
			if err != nil {
				t.Error(err)
				return
			}
			together[i], _ = h.Wait(ctx)
		}()
	}
	wg.Wait()
	for i, p := range prompts {
		if len(together[i].Prompt) != len(p)-1 {
			t.Fatalf("request %d: %d prompt logprobs for %d tokens", i, len(together[i].Prompt), len(p))
		}
		for k, lp := range together[i].Prompt {
			want := alone[i].Prompt[k]
			if lp.ID != p[k+1] || math.Abs(float64(lp.Logprob-want.Logprob)) > 1e-4 {
				t.Fatalf("request %d position %d: together %+v, alone %+v", i, k, lp, want)
			}
		}
	}
}

// The engine's vectorised sum (batching.ExpSummer) agrees with a float64
// sum of exp over a real row, in one chunk or many, and is NaN on a row
// holding a NaN (the scheduler then sums in Go).
func TestExpSumMatchesFloat64(t *testing.T) {
	e := open(t, 1, 512, 64)
	row := append([]float32(nil), lastRow(t, e, tokens(t, e, "The shopper looks at the cart and"))...)
	m := float32(math.Inf(-1))
	for _, l := range row {
		m = max(m, l)
	}
	var want float64
	for _, l := range row {
		want += math.Exp(float64(l) - float64(m))
	}
	scratch := make([]float32, len(row))
	if got := e.ExpSum(row, m, scratch); math.Abs(got-want)/want > 1e-6 {
		t.Fatalf("ExpSum %v, float64 sum %v", got, want)
	}
	if got := e.ExpSum(row, m, scratch[:7]); math.Abs(got-want)/want > 1e-6 {
		t.Fatalf("ExpSum in chunks of 7: %v, float64 sum %v", got, want)
	}
	if got := e.ExpSum(row, m, nil); !math.IsNaN(got) {
		t.Fatalf("ExpSum without scratch: %v", got)
	}
	row[len(row)/2] = float32(math.NaN())
	if got := e.ExpSum(row, m, scratch); !math.IsNaN(got) {
		t.Fatalf("ExpSum over a NaN: %v", got)
	}
}
