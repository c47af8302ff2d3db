package batching

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// candidate is a token and its scaled logit during sampling.
type candidate struct {
	id    int32
	logit float64
	p     float64
}

// sampler draws tokens for one sequence. Not goroutine-safe; the loop owns it.
type sampler struct {
	p     Sampling
	rng   *rand.Rand
	cands []candidate
}

func newSampler(p Sampling, seed uint64) *sampler {
	return &sampler{p: p, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// argmax returns the index of the largest logit (the lowest on ties).
func argmax(logits []float32) int32 {
	best := 0
	for i, l := range logits {
		if l > logits[best] {
			best = i
		}
	}
	return int32(best)
}

// logitWindow bounds which tokens can matter: a token whose scaled logit is
// this far below the best has probability under e^-30 relative to it.
const logitWindow = 30

// sample draws the next token from a logits row.
func (s *sampler) sample(logits []float32) int32 {
	if s.p.Temperature <= 0 {
		return argmax(logits)
	}
	best := argmax(logits)
	maxL := float64(logits[best])
	t := s.p.Temperature
	s.cands = s.cands[:0]
	for i, l := range logits {
		z := (float64(l) - maxL) / t
		if z > -logitWindow {
			s.cands = append(s.cands, candidate{id: int32(i), logit: z})
		}
	}
	cands := s.cands
	needSort := s.p.TopK > 0 && s.p.TopK < len(cands) || s.p.TopP > 0 && s.p.TopP < 1
	if needSort {
		slices.SortFunc(cands, func(a, b candidate) int {
			return cmp.Or(cmp.Compare(b.logit, a.logit), cmp.Compare(a.id, b.id))
		})
	}
	if s.p.TopK > 0 && s.p.TopK < len(cands) {
		cands = cands[:s.p.TopK]
	}
	var sum float64
	for i := range cands {
		cands[i].p = math.Exp(cands[i].logit)
		sum += cands[i].p
	}
	if s.p.TopP > 0 && s.p.TopP < 1 {
		var cum float64
		for i := range cands {
			cum += cands[i].p
			if cum >= s.p.TopP*sum {
				cands = cands[:i+1]
				sum = cum
				break
			}
		}
	}
	u := s.rng.Float64() * sum
	for _, c := range cands {
		u -= c.p
		if u < 0 {
			return c.id
		}
	}
	return cands[len(cands)-1].id
}
