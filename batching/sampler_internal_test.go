package batching

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// refSupport is the nucleus the straightforward algorithm gives (every
// window token sorted, cut to TopK, then to TopP of the mass): token ->
// unnormalised probability.
func refSupport(logits []float32, p Sampling) map[int32]float64 {
	maxL := float64(logits[argmax(logits)])
	var cands []candidate
	for i, l := range logits {
		if z := (float64(l) - maxL) / p.Temperature; z > -logitWindow {
			cands = append(cands, candidate{id: int32(i), logit: z})
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		return cmp.Or(cmp.Compare(b.logit, a.logit), cmp.Compare(a.id, b.id))
	})
	if p.TopK > 0 && p.TopK < len(cands) {
		cands = cands[:p.TopK]
	}
	var sum float64
	for i := range cands {
		cands[i].p = math.Exp(cands[i].logit)
		sum += cands[i].p
	}
	if p.TopP > 0 && p.TopP < 1 {
		var cum float64
		for i := range cands {
			cum += cands[i].p
			if cum >= p.TopP*sum {
				cands = cands[:i+1]
				break
			}
		}
	}
	out := map[int32]float64{}
	for _, c := range cands {
		out[c.id] = c.p
	}
	return out
}

// The linear-time top-p (bins, one bin sorted) keeps exactly the tokens a
// full sort keeps, with their probabilities; top-k (a heap) draws only
// inside the sorted top K, at their frequencies.
func TestSamplerCutsMatchFullSort(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	sc := &sampleScratch{}
	for trial := range 40 {
		logits := make([]float32, 3000)
		spread := 1 + r.Float64()*6
		for i := range logits {
			logits[i] = float32(r.NormFloat64() * spread)
		}
		if trial%5 == 0 { // ties and a flat tail
			for i := range logits[:1500] {
				logits[i] = float32(int(logits[i]))
			}
		}
		temp := 0.3 + r.Float64()*1.5
		topP := 0.05 + r.Float64()*0.9
		for _, p := range []Sampling{{Temperature: temp, TopP: topP}, {Temperature: temp}} {
			want := refSupport(logits, p)
			s := newSampler(p, uint64(trial))
			s.sample(logits, sc)
			got := 0
			for i, x := range sc.p {
				w, ok := want[int32(i)]
				switch {
				case x == 0 && ok:
					t.Fatalf("trial %d %+v: token %d (p %g) dropped", trial, p, i, w)
				case x != 0 && !ok:
					t.Fatalf("trial %d %+v: token %d kept, outside the nucleus of %d", trial, p, i, len(want))
				case x != 0 && math.Abs(x-w) > 1e-12*w:
					t.Fatalf("trial %d: token %d probability %g, want %g", trial, i, x, w)
				}
				if x != 0 {
					got++
				}
			}
			if got != len(want) {
				t.Fatalf("trial %d: kept %d tokens, want %d", trial, got, len(want))
			}
		}
		p := Sampling{Temperature: temp, TopK: 1 + r.IntN(40), TopP: []float64{0, topP}[trial%2]}
		want := refSupport(logits, p)
		s := newSampler(p, uint64(trial))
		for range 200 {
			if tok := s.must(t, logits, sc); want[tok] == 0 {
				t.Fatalf("trial %d %+v: drew %d outside the top-k set %v", trial, p, tok, want)
			}
		}
	}
}

// Top-k draws at the right frequencies: logits 0, ln 2, ln 3, ln 4 (p
// proportional to 1..4) cut to the top 3 give 2/9, 3/9, 4/9.
func TestSamplerTopKFrequencies(t *testing.T) {
	t.Parallel()
	logits := []float32{0, float32(math.Log(2)), float32(math.Log(3)), float32(math.Log(4))}
	s := newSampler(Sampling{Temperature: 1, TopK: 3}, 5)
	sc := &sampleScratch{}
	count := make([]int, 4)
	const n = 30000
	for range n {
		count[s.must(t, logits, sc)]++
	}
	for tok, want := range []float64{0, 2.0 / 9, 3.0 / 9, 4.0 / 9} {
		if f := float64(count[tok]) / n; math.Abs(f-want) > 0.015 {
			t.Fatalf("token %d drawn with frequency %.3f, want %.3f", tok, f, want)
		}
	}
}

// Once its scratch has grown, sampling allocates nothing.
func TestSamplerAllocatesNothing(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	logits := make([]float32, 128256)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 3)
	}
	sc := &sampleScratch{}
	for _, p := range []Sampling{{}, {Temperature: 0.8}, {Temperature: 0.8, TopP: 0.9}, {Temperature: 0.8, TopK: 40, TopP: 0.9}} {
		s := newSampler(p, 1)
		s.sample(logits, sc)
		if a := testing.AllocsPerRun(5, func() { s.sample(logits, sc) }); a != 0 {
			t.Fatalf("%+v: %.0f allocations per sample", p, a)
		}
	}
}

// must samples, failing the test on an error.
func (s *sampler) must(t testing.TB, logits []float32, sc *sampleScratch) int32 {
	t.Helper()
	tok, err := s.sample(logits, sc)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// BenchmarkSampleTopK is one top-k draw over a row of Llama 3's
// vocabulary size.
func BenchmarkSampleTopK(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	logits := make([]float32, 128256)
	for i := range logits {
		logits[i] = float32(r.NormFloat64() * 3)
	}
	s := newSampler(Sampling{Temperature: 0.8, TopK: 40, TopP: 0.95}, 1)
	sc := &sampleScratch{}
	b.ResetTimer()
	for range b.N {
		if _, err := s.sample(logits, sc); err != nil {
			b.Fatal(err)
		}
	}
}
