package llamacpp_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// recorder is a constraint that allows everything and records the tokens
// the scheduler drew, ending the output at an end-of-generation token: it
// shows which tokens were sampled, which the text alone does not.
type recorder struct {
	isEOG func(int32) bool
	toks  []int32
}

func (r *recorder) Mask([]float32, int) error { return nil }
func (r *recorder) MinTokens() int            { return 0 }
func (r *recorder) Accept(tok int32) (bool, error) {
	r.toks = append(r.toks, tok)
	return r.isEOG(tok), nil
}

var _ batching.Constraint = (*recorder)(nil)

// twoSlots is a scheduler of two slots on a fresh engine, closed when the
// test ends, and text's tokens.
func twoSlots(t *testing.T, text string) (*llamacpp.Engine, *batching.Scheduler, []int32) {
	t.Helper()
	e := open(t, 2, 512, 64)
	s, err := batching.New(e, e, batching.Config{Slots: 2, QueueSize: 8, StepTokens: 64, CtxPerSlot: 512}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	prompt, err := e.Tokenize(text, false)
	if err != nil {
		t.Fatal(err)
	}
	return e, s, prompt
}

// sampled runs one request on s and returns the tokens it drew.
func sampled(t *testing.T, s *batching.Scheduler, e interface{ IsEOG(int32) bool }, prompt []int32, n int, p batching.Sampling) []int32 {
	t.Helper()
	rec := &recorder{isEOG: e.IsEOG}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: n, Sampling: p, Constraint: rec})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := h.Wait(ctx); err != nil || c.Err != nil {
		t.Fatalf("wait: %v %v", err, c.Err)
	}
	return rec.toks
}

func counts(toks []int32) (distinct, most int) {
	m := map[int32]int{}
	for _, t := range toks {
		m[t]++
		most = max(most, m[t])
	}
	return len(m), most
}

// On the real engine, penalties and biases change greedy output in their
// documented direction: a bias of -100 bans a token, +100 forces it; the
// frequency and presence penalties spread the output over more distinct
// tokens; the repetition penalty keeps the prompt's tokens out.
func TestPenaltiesOnRealEngine(t *testing.T) {
	e, s, prompt := twoSlots(t, "the cart the cart the cart the cart")
	const n = 48
	base := sampled(t, s, e, prompt, n, batching.Sampling{})
	if len(base) == 0 {
		t.Fatal("no tokens")
	}
	baseDistinct, baseMost := counts(base)
	t.Logf("greedy: %d tokens, %d distinct, most repeated %d times", len(base), baseDistinct, baseMost)

	t.Run("logit_bias -100 bans", func(t *testing.T) {
		ban := map[int32]float32{}
		for _, tok := range base {
			if !e.IsEOG(tok) {
				ban[tok] = -100
			}
		}
		got := sampled(t, s, e, prompt, n, batching.Sampling{LogitBias: ban})
		for _, tok := range got {
			if _, banned := ban[tok]; banned {
				t.Fatalf("banned token %d drawn: %v", tok, got)
			}
		}
	})
	t.Run("logit_bias +100 forces", func(t *testing.T) {
		var pick int32 = 100
		for e.IsEOG(pick) {
			pick++
		}
		got := sampled(t, s, e, prompt, 8, batching.Sampling{LogitBias: map[int32]float32{pick: 100}})
		for _, tok := range got {
			if tok != pick {
				t.Fatalf("drew %d, want only %d: %v", tok, pick, got)
			}
		}
	})
	for _, c := range []struct {
		name string
		p    batching.Sampling
	}{
		{"frequency_penalty", batching.Sampling{FrequencyPenalty: 2}},
		{"presence_penalty", batching.Sampling{PresencePenalty: 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := sampled(t, s, e, prompt, n, c.p)
			d, most := counts(got)
			t.Logf("%d tokens, %d distinct, most repeated %d times", len(got), d, most)
			if d <= baseDistinct || most >= baseMost {
				t.Fatalf("no spread: %d distinct (greedy %d), most %d (greedy %d)", d, baseDistinct, most, baseMost)
			}
		})
	}
	t.Run("negative frequency_penalty repeats", func(t *testing.T) {
		got := sampled(t, s, e, prompt, n, batching.Sampling{FrequencyPenalty: -2})
		d, most := counts(got)
		if d > baseDistinct || most < baseMost {
			t.Fatalf("more spread: %d distinct (greedy %d), most %d (greedy %d)", d, baseDistinct, most, baseMost)
		}
	})
	t.Run("repetition_penalty keeps the prompt out", func(t *testing.T) {
		// The greedy output so far in the prompt: greedy goes on drawing
		// tokens it already drew.
		prompt := append(append([]int32(nil), prompt...), base[:n/2]...)
		base := sampled(t, s, e, prompt, n/2, batching.Sampling{})
		inPrompt := map[int32]bool{}
		for _, tok := range prompt {
			inPrompt[tok] = true
		}
		from := func(toks []int32) (k int) {
			for _, tok := range toks {
				if inPrompt[tok] {
					k++
				}
			}
			return k
		}
		got := sampled(t, s, e, prompt, n/2, batching.Sampling{RepetitionPenalty: 10})
		t.Logf("prompt tokens: greedy %d, penalized %d", from(base), from(got))
		if from(base) == 0 || from(got) >= from(base) {
			t.Fatalf("prompt tokens drawn: %d with the penalty, %d without", from(got), from(base))
		}
	})
}

// Logprobs are the model's, before penalties and biases: a token a bias of
// +100 forces reports the logprob the unbiased row gives it, and so does
// a token drawn under penalties.
func TestLogprobsIgnorePenalties(t *testing.T) {
	e, s, prompt := twoSlots(t, "the shopper clicks")
	first := func(p batching.Sampling, top int) batching.TokenLogprob {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		h, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: 1, Sampling: p, Logprobs: true, TopLogprobs: top})
		if err != nil {
			t.Fatal(err)
		}
		c, err := h.Wait(ctx)
		if err != nil || c.Err != nil || len(c.Tokens) != 1 {
			t.Fatalf("wait: %v %v %+v", err, c.Err, c.Tokens)
		}
		return c.Tokens[0]
	}
	plain := first(batching.Sampling{}, 20)
	var pick batching.TopLogprob
	for _, c := range plain.Top {
		if !e.IsEOG(c.ID) {
			pick = c // the least likely non-EOG token of the top 20
		}
	}
	for _, p := range []batching.Sampling{
		{LogitBias: map[int32]float32{pick.ID: 100}},
		{LogitBias: map[int32]float32{pick.ID: 100}, RepetitionPenalty: 3, PresencePenalty: 2},
	} {
		got := first(p, 0)
		if got.ID != pick.ID || got.Logprob != pick.Logprob {
			t.Fatalf("%+v: token %d logprob %v, want token %d at its raw logprob %v", p, got.ID, got.Logprob, pick.ID, pick.Logprob)
		}
	}
}

// Under a constraint that forces tokens, with logprobs fed one by one, a
// forced token's logprob is the model's too: the same with a repetition
// penalty as without, including tokens of the prompt that the penalty
// changed in an earlier step's row.
func TestForcedLogprobsIgnorePenalties(t *testing.T) {
	e, s, prompt := twoSlots(t, `{"a":"xyz","b":1} {"a":"xyz","b":2}`)
	vocab, err := nextaction.NewVocab(e.Pieces(), e.Special(), e.EOGTokens())
	if err != nil {
		t.Fatal(err)
	}
	schema, err := nextaction.SchemaGrammar([]byte(`{"type":"object","properties":{"a":{"const":"xyz"},"b":{"type":"integer","minimum":0,"maximum":9}},"required":["a","b"],"additionalProperties":false}`))
	if err != nil {
		t.Fatal(err)
	}
	run := func(p batching.Sampling) []batching.TokenLogprob {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		h, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: 40, Sampling: p, Logprobs: true,
			Constraint: nextaction.NewByteConstraint(vocab, schema)})
		if err != nil {
			t.Fatal(err)
		}
		c, err := h.Wait(ctx)
		if err != nil || c.Err != nil {
			t.Fatalf("wait: %v %v", err, c.Err)
		}
		return c.Tokens
	}
	plain := run(batching.Sampling{})
	// Bias the digit the plain run drew, so both runs draw it: every other
	// token is forced, and their logprobs must not change.
	var digit int32 = -1
	for _, tok := range plain {
		if p := e.Piece(tok.ID); len(p) == 1 && p[0] >= '0' && p[0] <= '9' {
			digit = tok.ID
		}
	}
	if digit < 0 {
		t.Fatalf("no digit drawn: %+v", plain)
	}
	penalized := run(batching.Sampling{RepetitionPenalty: 3, LogitBias: map[int32]float32{digit: 100}})
	if len(penalized) != len(plain) {
		t.Fatalf("%d tokens with the penalty, %d without", len(penalized), len(plain))
	}
	for i := range plain {
		if penalized[i].ID != plain[i].ID || penalized[i].Logprob != plain[i].Logprob {
			t.Fatalf("token %d (%q): %+v with the penalty, %+v without", i, e.Piece(plain[i].ID), penalized[i], plain[i])
		}
	}
}
