package batching

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// rowStats on awkward rows: NaN and -Inf never in the top, ties by lower
// id, fewer finite tokens than the top asks, no finite maximum.
func TestRowStatsEdges(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(-1))
	var sc sampleScratch
	st, ok := rowStats([]float32{nan, 1, inf, 1, 0}, 5, &sc, nil)
	if !ok || len(st.top) != 3 {
		t.Fatalf("top %+v ok %v, want the 3 finite tokens", st.top, ok)
	}
	if st.top[0].ID != 1 || st.top[1].ID != 3 || st.top[2].ID != 4 || st.top[0].Logprob != st.top[1].Logprob {
		t.Fatalf("top %+v: want 1, 3 (tied, lower id first), 4", st.top)
	}
	want := float32(1 - math.Log(2*math.E+1))
	if d := st.top[0].Logprob - want; d > 1e-6 || d < -1e-6 {
		t.Fatalf("logprob %v, want %v", st.top[0].Logprob, want)
	}
	if tok := st.token(2, inf); !math.IsInf(float64(tok.Logprob), -1) {
		t.Fatalf("a -Inf logit's logprob is %v", tok.Logprob)
	}
	for _, row := range [][]float32{{nan, inf}, {inf, inf}, {0, float32(math.Inf(1))}} {
		if _, ok := rowStats(row, 2, &sc, nil); ok {
			t.Fatalf("%v has no finite maximum but rowStats took it", row)
		}
	}
}

// The top of a random row is the true top N, sorted, and its logprobs
// agree with a float64 log-softmax of the whole row.
func TestRowStatsMatchesFullSort(t *testing.T) {
	row := normalRow(5000, 4, 3)
	var sc sampleScratch
	st, _ := rowStats(row, 20, &sc, nil)
	m := math.Inf(-1)
	for _, l := range row {
		m = max(m, float64(l))
	}
	var sum float64
	for _, l := range row {
		sum += math.Exp(float64(l) - m)
	}
	norm := m + math.Log(sum)
	for k, c := range st.top {
		above := 0
		for _, l := range row {
			if l > row[c.ID] {
				above++
			}
		}
		if above != k {
			t.Fatalf("top[%d] = %d has %d logits above it", k, c.ID, above)
		}
		if d := float64(c.Logprob) - (float64(row[c.ID]) - norm); math.Abs(d) > 1e-5 {
			t.Fatalf("top[%d] logprob off by %v", k, d)
		}
	}
}

var expSink float64

// givenSum is an ExpSummer that does no work.
type givenSum struct{}

func (givenSum) ExpSum([]float32, float32, []float32) float64 { return 1.5 }

// The host cost of one row's logprobs over Llama 3's 128,256 tokens
// (normal logits, sd 3, as BenchmarkHostStep's), against a greedy pick
// and a temperature draw of the same row. See docs/PERFORMANCE.md.
func BenchmarkRowLogprobs(b *testing.B) {
	row := normalRow(128256, 3, 7)
	var sc sampleScratch
	for _, top := range []int{0, 5, 20} {
		b.Run(fmt.Sprintf("top%02d", top), func(b *testing.B) {
			for b.Loop() {
				rowStats(row, top, &sc, nil)
			}
		})
	}
	// The rest of the work, with the sum given (the engine's ExpSummer
	// does it; runtime/llamacpp's BenchmarkExpSum times that).
	for _, top := range []int{0, 5, 20} {
		b.Run(fmt.Sprintf("top%02d-sum-given", top), func(b *testing.B) {
			for b.Loop() {
				rowStats(row, top, &sc, givenSum{})
			}
		})
	}
	b.Run("math.Exp-sum", func(b *testing.B) { // expSum with the library's exp
		for b.Loop() {
			var sum float64
			for _, l := range row {
				sum += math.Exp(float64(l) - 12)
			}
			expSink = sum
		}
	})
	b.Run("greedy-pick", func(b *testing.B) {
		for b.Loop() {
			argmax(row)
		}
	})
	b.Run("temperature-draw", func(b *testing.B) {
		s := newSampler(Sampling{Temperature: 0.8}, 1)
		for b.Loop() {
			_, _ = s.sample(row, &sc)
		}
	})
}

// expWindow agrees with math.Exp over the window to a relative 1e-7.
func TestExpWindow(t *testing.T) {
	for x := -float64(lseWindow); x <= 0; x += 0.000731 {
		want := math.Exp(x)
		if d := math.Abs(expWindow(x)-want) / want; d > 1e-7 {
			t.Fatalf("expWindow(%v) = %v, math.Exp %v (relative %v)", x, expWindow(x), want, d)
		}
	}
	if expWindow(0) != 1 {
		t.Fatalf("expWindow(0) = %v", expWindow(0))
	}
}

// normalRow is n logits drawn from a normal of standard deviation sd.
func normalRow(n int, sd float64, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, seed+1))
	row := make([]float32, n)
	for i := range row {
		row[i] = float32(r.NormFloat64() * sd)
	}
	return row
}
