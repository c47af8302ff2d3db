package bench_test

import (
	"math"
	"testing"
	"time"

	"github.com/nextact/nextact/bench"
)

func TestPercentileKnownSamples(t *testing.T) {
	t.Parallel()
	// Expected values are numpy.percentile's (linear interpolation).
	tests := []struct {
		name   string
		sorted []float64
		q      float64
		want   float64
	}{
		{"one sample", []float64{7}, 0.99, 7},
		{"median of even count", []float64{1, 2, 3, 4}, 0.5, 2.5},
		{"p90 of 1..4", []float64{1, 2, 3, 4}, 0.9, 3.7},
		{"p99 of 1..4", []float64{1, 2, 3, 4}, 0.99, 3.97},
		{"median of odd count", []float64{15, 20, 35, 40, 50}, 0.5, 35},
		{"p90 of five", []float64{15, 20, 35, 40, 50}, 0.9, 46},
		{"p99 of five", []float64{15, 20, 35, 40, 50}, 0.99, 49.6},
		{"q=0 is the minimum", []float64{3, 5, 9}, 0, 3},
		{"q=1 is the maximum", []float64{3, 5, 9}, 1, 9},
		{"p50 of 1..100", seq(100), 0.5, 50.5},
		{"p99 of 1..100", seq(100), 0.99, 99.01},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := bench.Percentile(tc.sorted, tc.q); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("Percentile(%v, %g) = %g, want %g", tc.sorted, tc.q, got, tc.want)
			}
		})
	}
	if got := bench.Percentile(nil, 0.5); !math.IsNaN(got) {
		t.Errorf("Percentile of no samples = %g, want NaN", got)
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i + 1)
	}
	return out
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	d := bench.Summarize([]float64{40, 10, 30, 20}) // unsorted on purpose
	want := bench.Dist{Count: 4, Mean: 25, Min: 10, P50: 25, P90: 37, P99: 39.7, Max: 40}
	if d == nil || *d != want {
		t.Fatalf("Summarize = %+v, want %+v", d, want)
	}
	if bench.Summarize(nil) != nil {
		t.Error("Summarize of no samples is not nil")
	}
}

func step(o bench.Outcome, ttft, e2e time.Duration) bench.StepRecord {
	return bench.StepRecord{Outcome: o, TTFT: ttft, E2E: e2e, ITL: -1, PromptTokens: -1, CompletionTokens: -1, CachedTokens: -1}
}

func TestGoodput(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	recs := []bench.StepRecord{
		step(bench.OutcomeSuccess, 50*ms, 400*ms),   // meets both
		step(bench.OutcomeSuccess, 100*ms, 1000*ms), // meets both, at the bounds
		step(bench.OutcomeSuccess, 150*ms, 300*ms),  // TTFT too slow
		step(bench.OutcomeSuccess, 20*ms, 1500*ms),  // step too slow
		step(bench.OutcomeSuccess, -1, 200*ms),      // TTFT not measured
		step(bench.OutcomeRejected, 10*ms, 10*ms),   // not a success
		step(bench.OutcomeFailed, 10*ms, 10*ms),     // not a success
	}
	tests := []struct {
		name string
		slo  bench.SLO
		want int
	}{
		{"no objectives counts successes", bench.SLO{}, 5},
		{"ttft only", bench.SLO{TTFT: 100 * ms}, 3},
		{"step only", bench.SLO{Step: time.Second}, 4},
		{"both", bench.SLO{TTFT: 100 * ms, Step: time.Second}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n, per := bench.Goodput(recs, tc.slo, 4*time.Second)
			if n != tc.want || math.Abs(per-float64(tc.want)/4) > 1e-12 {
				t.Errorf("Goodput = %d, %g/s; want %d, %g/s", n, per, tc.want, float64(tc.want)/4)
			}
		})
	}
	if _, per := bench.Goodput(recs, bench.SLO{}, 0); per != 0 {
		t.Errorf("goodput over no wall time = %g, want 0", per)
	}
}
