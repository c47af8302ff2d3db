package batching

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Penalties and biases change exactly the tokens they name, by the
// documented amounts, in the documented order.
func TestPenaltiesApply(t *testing.T) {
	t.Parallel()
	row := func() []float32 { return []float32{2, -2, 1, 0.5, 3, -1} }
	pen := newPenalties(Sampling{
		RepetitionPenalty: 2,
		PresencePenalty:   0.5,
		FrequencyPenalty:  0.25,
		LogitBias:         map[int32]float32{3: 1, 5: -100},
	}, []int32{0, 1, 0}, true)
	pen.seen(2)
	pen.seen(2)
	pen.seen(1)
	got := row()
	pen.apply(got)
	want := []float32{
		2.0 / 2,               // in the prompt: positive divided
		-2*2 - 0.5 - 0.25,     // prompt and once in the output: negative multiplied, then penalized
		1.0/2 - 0.5 - 2*0.25,  // twice in the output
		0.5 + 1,               // biased
		3,                     // untouched
		float32(math.Inf(-1)), // banned
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("token %d: %v, want %v (row %v)", i, got[i], want[i], got)
		}
	}
	for i, l := range row() { // raw: the engine's logits, whatever apply changed
		if r := pen.raw(int32(i), got); r != l {
			t.Fatalf("raw logit of token %d: %v, want %v", i, r, l)
		}
	}
	biasOnly := newPenalties(Sampling{LogitBias: map[int32]float32{0: 1}}, nil, false)
	biasOnly.seen(0) // counts nothing: no penalty reads them
	biased := row()
	biasOnly.apply(biased)
	if biased[0] != 3 || biasOnly.raw(0, biased) != 3 {
		t.Fatalf("bias only, without logprobs: row %v", biased)
	}
	if newPenalties(Sampling{RepetitionPenalty: 1}, []int32{1}, true) != nil || newPenalties(Sampling{}, nil, true) != nil {
		t.Fatal("neutral values build a penalty state")
	}
	// Overflow stays finite: a row keeps a finite maximum.
	for _, r := range []float64{MinRepetitionPenalty, MaxRepetitionPenalty} {
		big := []float32{math.MaxFloat32 / 2, -math.MaxFloat32 / 2}
		newPenalties(Sampling{RepetitionPenalty: r}, []int32{0, 1}, false).apply(big)
		if math.IsInf(float64(big[0]), 0) || math.IsInf(float64(big[1]), 0) {
			t.Fatalf("repetition penalty %g overflowed the row: %v", r, big)
		}
	}
	var none *penalties
	none.seen(1)
	r := row()
	none.apply(r)
	if r[0] != 2 {
		t.Fatal("nil penalties changed the row")
	}
}

// min-p keeps only tokens at least MinP times as likely (after
// temperature) as the best; the distribution inside is unchanged.
func TestMinP(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(9, 9))
	logits := make([]float32, 500)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 2)
	}
	best := float64(logits[argmax(logits)])
	sc := &sampleScratch{}
	for _, p := range []Sampling{{Temperature: 1.5, MinP: 0.2}, {Temperature: 0.8, MinP: 0.05, TopK: 50}, {Temperature: 1, MinP: 0.1, TopP: 0.9}} {
		s := newSampler(p, 3)
		below := 0
		for range 3000 {
			tok, err := s.sample(logits, sc)
			if err != nil {
				t.Fatal(err)
			}
			if rel := math.Exp((float64(logits[tok]) - best) / p.Temperature); rel < p.MinP {
				t.Fatalf("%+v drew token %d at %.3f of the best's probability", p, tok, rel)
			}
		}
		// Without min-p the same draws do fall below it: the cut matters.
		p.MinP = 0
		s = newSampler(p, 3)
		for range 3000 {
			tok, _ := s.sample(logits, sc)
			if math.Exp((float64(logits[tok])-best)/p.Temperature) < 0.05 {
				below++
			}
		}
		if below == 0 {
			t.Fatalf("%+v: no draw below min-p without it: the test shows nothing", p)
		}
	}
}

// Out-of-range values and bias entries are refused, naming the field.
func TestCheckPenalties(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		p     Sampling
		field string
	}{
		{Sampling{PresencePenalty: 2.1}, "presence_penalty"},
		{Sampling{FrequencyPenalty: math.NaN()}, "frequency_penalty"},
		{Sampling{RepetitionPenalty: -1}, "repetition_penalty"},
		{Sampling{RepetitionPenalty: math.Inf(1)}, "repetition_penalty"},
		{Sampling{RepetitionPenalty: 1e-300}, "repetition_penalty"},
		{Sampling{MinP: 1.01}, "min_p"},
		{Sampling{LogitBias: map[int32]float32{10: 1}}, "logit_bias"},
		{Sampling{LogitBias: map[int32]float32{-1: 1}}, "logit_bias"},
		{Sampling{LogitBias: map[int32]float32{1: 100.5}}, "logit_bias"},
	} {
		err := c.p.checkPenalties(10)
		re, ok := err.(*RequestError)
		if !ok || re.Field != c.field {
			t.Errorf("%+v: %v, want a RequestError on %s", c.p, err, c.field)
		}
	}
	if err := (&Sampling{PresencePenalty: -2, FrequencyPenalty: 2, RepetitionPenalty: 10, MinP: 1, LogitBias: map[int32]float32{9: -100}}).checkPenalties(10); err != nil {
		t.Fatal(err)
	}
}
