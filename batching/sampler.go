package batching

import (
	"cmp"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
)

// ErrNoFiniteLogit fails a sequence whose logits row has no finite
// maximum: every logit NaN or -Inf (or one +Inf), a known failure mode of
// an engine (overflow in low precision, a broken model). Nothing can be
// drawn from such a row; the request ends with FinishError. Within a row
// that has a finite maximum, NaN logits count as -Inf: never drawn.
var ErrNoFiniteLogit = errors.New("the model produced no finite logit (NaN or infinite values) for this sequence")

// candidate is a token and its scaled logit during sampling.
type candidate struct {
	id    int32
	logit float64
	p     float64
}

// better orders candidates: higher logit first, then lower id.
func better(a, b candidate) bool {
	return a.logit > b.logit || (a.logit == b.logit && a.id < b.id)
}

// sampler draws tokens for one sequence: its parameters and its random
// stream. Not goroutine-safe: one sampling worker at a time uses it.
type sampler struct {
	p   Sampling
	rng *rand.Rand
	// lnMinP is ln(MinP): a token whose scaled logit is below the best's
	// by more than -lnMinP is dropped (-Inf without min-p).
	lnMinP float64
}

func newSampler(p Sampling, seed uint64) *sampler {
	s := &sampler{p: p, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), lnMinP: math.Inf(-1)}
	if p.MinP > 0 {
		s.lnMinP = math.Log(p.MinP)
	}
	return s
}

// sampleScratch is vocabulary-sized working memory, one per sampling
// worker (not per sequence: 128 sequences would otherwise keep 128 of
// them), reused from step to step so sampling allocates nothing once
// warm.
type sampleScratch struct {
	p     []float64   // by token: e^z inside the window, else 0
	bins  []float64   // top-p: probability mass by bin of z
	cands []candidate // top-k heap, top-p's cut-off bin
	terms []float32   // logprobs: an ExpSummer's scratch (logprobs.go)
}

// argmax returns the index of the largest logit (the lowest on ties), or
// -1 when no logit is above -Inf (a NaN is never larger than anything). It
// is a scan for a strictly larger value, like the plain loop, but tests
// eight values against the running maximum at once with no dependency
// between them, and walks a block one by one only when one of them is
// larger, which after the first few blocks is rare: on a 128k-token row it
// runs at the speed of a plain read of the row.
func argmax(logits []float32) int32 {
	m, best := float32(math.Inf(-1)), -1
	i := 0
	for ; i+8 <= len(logits); i += 8 {
		c := logits[i : i+8 : i+8]
		if c[0] > m || c[1] > m || c[2] > m || c[3] > m || c[4] > m || c[5] > m || c[6] > m || c[7] > m {
			for k, v := range c {
				if v > m {
					m, best = v, i+k
				}
			}
		}
	}
	for ; i < len(logits); i++ {
		if logits[i] > m {
			m, best = logits[i], i
		}
	}
	return int32(best)
}

// logitWindow bounds which tokens can matter: a token whose scaled logit is
// this far below the best has probability under e^-30 relative to it.
const logitWindow = 30

// binsPerUnit is top-p's resolution: bins of 1/64 of a scaled logit over
// the window.
const binsPerUnit = 64

// cuts reports whether sampling a row of n logits cuts the distribution
// (top-k, top-p or min-p at a temperature above 0).
func (s *sampler) cuts(n int) bool {
	return s.p.Temperature > 0 && (s.p.TopK > 0 && s.p.TopK < n || s.p.TopP > 0 && s.p.TopP < 1 || s.p.MinP > 0)
}

// sample draws the next token from a logits row: greedy at temperature 0,
// else from softmax(logits/T) cut to the TopK most likely tokens, then to
// those at least MinP times as likely as the best, and then to the
// smallest most-likely set holding TopP of the mass. Linear in the
// vocabulary: no sort of the whole row. A row with no finite maximum is
// ErrNoFiniteLogit.
func (s *sampler) sample(logits []float32, sc *sampleScratch) (int32, error) {
	best := argmax(logits)
	if best < 0 || math.IsInf(float64(logits[best]), 1) {
		return 0, ErrNoFiniteLogit
	}
	if s.p.Temperature <= 0 {
		return best, nil
	}
	maxL := float64(logits[best])
	if s.p.TopK > 0 && s.p.TopK < len(logits) {
		return s.sampleTopK(logits, maxL, sc), nil
	}
	t := s.p.Temperature
	p := grow(sc.p, len(logits))
	sc.p = p
	var sum float64
	for i, l := range logits {
		z := (float64(l) - maxL) / t
		if z > -logitWindow && z >= s.lnMinP {
			e := math.Exp(z)
			p[i] = e
			sum += e
		} else {
			p[i] = 0
		}
	}
	if s.p.TopP > 0 && s.p.TopP < 1 {
		sum = s.nucleus(logits, maxL, sum, sc)
	}
	u := s.rng.Float64() * sum
	for i, x := range p {
		u -= x
		if u < 0 {
			return int32(i), nil
		}
	}
	return best, nil // rounding left u at 0: the mass ends at the top token's side
}

// nucleus keeps in sc.p only the smallest most-likely set of tokens whose
// mass reaches TopP of sum, and returns that set's mass. Tokens are binned
// by scaled logit (a bin's tokens are all less likely than the bins above
// it), the bins summed from the top to the one where TopP is crossed, and
// only that bin's tokens sorted.
func (s *sampler) nucleus(logits []float32, maxL, sum float64, sc *sampleScratch) float64 {
	t := s.p.Temperature
	nb := logitWindow * binsPerUnit
	bins := grow(sc.bins, nb)
	sc.bins = bins
	clear(bins)
	scale := binsPerUnit / t
	bin := func(l float32) int { return min(int((maxL-float64(l))*scale), nb-1) }
	for i, x := range sc.p {
		if x > 0 {
			bins[bin(logits[i])] += x
		}
	}
	target := s.p.TopP * sum
	cut, above := -1, 0.0
	for b, m := range bins {
		if above+m >= target {
			cut = b
			break
		}
		above += m
	}
	if cut < 0 { // rounding: the bins' total fell short of TopP x sum
		return sum
	}
	edge := sc.cands[:0]
	for i, x := range sc.p {
		if x > 0 && bin(logits[i]) == cut {
			edge = append(edge, candidate{id: int32(i), logit: float64(logits[i]), p: x})
		}
	}
	slices.SortFunc(edge, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(b.logit, a.logit), cmp.Compare(a.id, b.id))
	})
	kept := len(edge)
	acc := above
	for k, c := range edge {
		acc += c.p
		if acc >= target {
			kept = k + 1
			break
		}
	}
	for _, c := range edge[kept:] {
		sc.p[c.id] = 0
	}
	sc.cands = edge
	for i, x := range sc.p {
		if x > 0 && bin(logits[i]) > cut {
			sc.p[i] = 0
		}
	}
	return acc
}

// sampleTopK draws among the TopK most likely tokens (then TopP of their
// mass): the K best of the row by topN (eight logits tested at once
// against the heap's worst), then only those K sorted and cut to the
// window and min-p, which keep a prefix of them (both cut by logit).
func (s *sampler) sampleTopK(logits []float32, maxL float64, sc *sampleScratch) int32 {
	t := s.p.Temperature
	h := topN(logits, s.p.TopK, sc.cands[:0])
	slices.SortFunc(h, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(b.logit, a.logit), cmp.Compare(a.id, b.id))
	})
	for i := range h {
		z := (h[i].logit - maxL) / t
		if !(z > -logitWindow) || z < s.lnMinP { // far below the best, or under min-p: so is the rest
			h = h[:i]
			break
		}
		h[i].logit = z
	}
	sc.cands = h
	var sum float64
	for i := range h {
		h[i].p = math.Exp(h[i].logit)
		sum += h[i].p
	}
	cands := h
	if s.p.TopP > 0 && s.p.TopP < 1 {
		var cum float64
		for i := range cands {
			cum += cands[i].p
			if cum >= s.p.TopP*sum {
				cands, sum = cands[:i+1], cum
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

// heapUp and heapDown keep h a min-heap under better: h[0] is the worst
// of the K kept.
func heapUp(h []candidate, i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !better(h[parent], h[i]) {
			return
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
}

func heapDown(h []candidate, i int) {
	for {
		worst, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && better(h[worst], h[l]) {
			worst = l
		}
		if r < len(h) && better(h[worst], h[r]) {
			worst = r
		}
		if worst == i {
			return
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
}

// grow returns buf with length n, reusing its storage when it is enough.
func grow[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}
