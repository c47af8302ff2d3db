package batching

import (
	"fmt"
	"math"
)

// Bounds of the penalty and bias parameters (Sampling), checked by Submit.
const (
	// MaxPenalty bounds PresencePenalty and FrequencyPenalty in absolute
	// value (OpenAI's range).
	MaxPenalty = 2
	// MinRepetitionPenalty and MaxRepetitionPenalty bound RepetitionPenalty
	// (0 is none, like 1).
	MinRepetitionPenalty = 0.01
	MaxRepetitionPenalty = 10
	// MaxLogitBias bounds a bias in absolute value; -100 bans the token.
	MaxLogitBias = 100
	// MaxLogitBiasEntries bounds the entries of LogitBias.
	MaxLogitBiasEntries = 1024
)

// penalizes reports whether p changes logits before sampling.
func (p *Sampling) penalizes() bool {
	return p.PresencePenalty != 0 || p.FrequencyPenalty != 0 || p.repetition() || len(p.LogitBias) > 0
}

// repetition reports whether a repetition penalty applies (0 and 1 are
// none).
func (p *Sampling) repetition() bool {
	return p.RepetitionPenalty != 0 && p.RepetitionPenalty != 1
}

// checkPenalties refuses out-of-range penalty, bias and min-p values, and
// bias entries for tokens outside a vocabulary of vocabSize tokens.
func (p *Sampling) checkPenalties(vocabSize int) error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !finite(p.PresencePenalty) || math.Abs(p.PresencePenalty) > MaxPenalty:
		return &RequestError{Field: "presence_penalty", Msg: fmt.Sprintf("must be between -%d and %d, got %g", MaxPenalty, MaxPenalty, p.PresencePenalty)}
	case !finite(p.FrequencyPenalty) || math.Abs(p.FrequencyPenalty) > MaxPenalty:
		return &RequestError{Field: "frequency_penalty", Msg: fmt.Sprintf("must be between -%d and %d, got %g", MaxPenalty, MaxPenalty, p.FrequencyPenalty)}
	case !finite(p.RepetitionPenalty) || p.RepetitionPenalty != 0 && (p.RepetitionPenalty < MinRepetitionPenalty || p.RepetitionPenalty > MaxRepetitionPenalty):
		return &RequestError{Field: "repetition_penalty", Msg: fmt.Sprintf("must be between %g and %d (1 is none), got %g", MinRepetitionPenalty, MaxRepetitionPenalty, p.RepetitionPenalty)}
	case !finite(p.MinP) || p.MinP < 0 || p.MinP > 1:
		return &RequestError{Field: "min_p", Msg: fmt.Sprintf("must be between 0 and 1, got %g", p.MinP)}
	case len(p.LogitBias) > MaxLogitBiasEntries:
		return &RequestError{Field: "logit_bias", Msg: fmt.Sprintf("has %d entries, at most %d allowed", len(p.LogitBias), MaxLogitBiasEntries)}
	}
	for tok, b := range p.LogitBias {
		if tok < 0 || int(tok) >= vocabSize {
			return &RequestError{Field: "logit_bias", Msg: fmt.Sprintf("token %d is outside the vocabulary (0 to %d)", tok, vocabSize-1)}
		}
		if v := float64(b); !finite(v) || math.Abs(v) > MaxLogitBias {
			return &RequestError{Field: "logit_bias", Msg: fmt.Sprintf("bias of token %d must be between -%d and %d, got %g", tok, MaxLogitBias, MaxLogitBias, v)}
		}
	}
	return nil
}

// penalties is one sequence's penalty state: how often each token was
// generated, and which tokens the prompt holds (for the repetition
// penalty). Its work per step is linear in the distinct tokens seen, never
// in the vocabulary. Written by the loop (seen) between steps, read by
// the sequence's sampling worker (apply) during one: never both at once.
type penalties struct {
	p Sampling
	// counts are the generated tokens' (nil: no penalty reads them).
	counts map[int32]int
	// prompt lists the prompt's distinct tokens, inPrompt indexes them.
	prompt   []int32
	inPrompt map[int32]struct{}
	// orig holds the raw logits apply overwrote in the current row, for
	// the logprob of the token drawn (raw); nil when the request has no
	// logprobs, and apply keeps nothing.
	orig map[int32]float32
}

// newPenalties returns the state for p, or nil when p penalizes nothing.
// The prompt is indexed only when a repetition penalty applies; the
// overwritten logits are kept only for a request with logprobs.
func newPenalties(p Sampling, prompt []int32, logprobs bool) *penalties {
	if !p.penalizes() {
		return nil
	}
	pen := &penalties{p: p}
	if p.PresencePenalty != 0 || p.FrequencyPenalty != 0 || p.repetition() {
		pen.counts = make(map[int32]int)
	}
	if logprobs {
		pen.orig = make(map[int32]float32)
	}
	if p.repetition() {
		pen.inPrompt = make(map[int32]struct{}, min(len(prompt), 4096))
		for _, t := range prompt {
			if _, ok := pen.inPrompt[t]; !ok {
				pen.inPrompt[t] = struct{}{}
				pen.prompt = append(pen.prompt, t)
			}
		}
	}
	return pen
}

// seen counts a generated token.
func (pen *penalties) seen(tok int32) {
	if pen != nil && pen.counts != nil {
		pen.counts[tok]++
	}
}

// apply changes a logits row in place, in the order vLLM and llama.cpp
// use: the repetition penalty (a positive logit divided by it, a negative
// one multiplied, for every token of the prompt or the output), then
// OpenAI's presence and frequency penalties (subtracted once, and once per
// occurrence, for every token of the output), then the logit biases
// (added; a bias of -100 bans the token outright).
func (pen *penalties) apply(logits []float32) {
	if pen == nil {
		return
	}
	clear(pen.orig)
	keep := func(t int32) {
		if _, ok := pen.orig[t]; !ok && pen.orig != nil {
			pen.orig[t] = logits[t]
		}
	}
	if r := float32(pen.p.RepetitionPenalty); pen.p.repetition() {
		rep := func(t int32) {
			keep(t)
			if l := logits[t]; l > 0 {
				logits[t] = finite32(l / r)
			} else {
				logits[t] = finite32(l * r)
			}
		}
		for _, t := range pen.prompt {
			rep(t)
		}
		for t := range pen.counts {
			if _, ok := pen.inPrompt[t]; !ok {
				rep(t)
			}
		}
	}
	if pres, freq := pen.p.PresencePenalty, pen.p.FrequencyPenalty; pres != 0 || freq != 0 {
		for t, n := range pen.counts {
			keep(t)
			logits[t] = finite32(logits[t] - float32(pres+freq*float64(n)))
		}
	}
	for t, b := range pen.p.LogitBias {
		keep(t)
		if b <= -MaxLogitBias {
			logits[t] = float32(math.Inf(-1))
		} else {
			logits[t] = finite32(logits[t] + b)
		}
	}
}

// finite32 keeps a penalized logit finite: an overflow to ±Inf becomes the
// largest finite value of its sign (so a row keeps a finite maximum, and
// a penalty never bans a token outright); NaN stays NaN (never drawn).
func finite32(l float32) float32 {
	switch {
	case l > math.MaxFloat32:
		return math.MaxFloat32
	case l < -math.MaxFloat32:
		return -math.MaxFloat32
	}
	return l
}

// raw is token t's logit in row logits as the engine gave it, before
// apply changed it: valid for the row apply was last called on.
func (pen *penalties) raw(t int32, logits []float32) float32 {
	if pen != nil {
		if l, ok := pen.orig[t]; ok {
			return l
		}
	}
	return logits[t]
}
