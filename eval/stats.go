package eval

import (
	"math"
	"math/big"
	"math/rand/v2"
	"slices"

	"github.com/nextact/nextact/bench"
)

// F1 is the F1 score of a class from its true positives, false positives
// and false negatives: 2TP / (2TP + FP + FN), the harmonic mean of
// precision and recall. It is undefined (ok false) when all three are 0:
// the class was neither present nor predicted.
func F1(tp, fp, fn int) (f1 float64, ok bool) {
	d := 2*tp + fp + fn
	if d == 0 {
		return 0, false
	}
	return float64(2*tp) / float64(d), true
}

// ratio is a/b, undefined when b is 0.
func ratio(a, b int) *float64 {
	if b == 0 {
		return nil
	}
	x := float64(a) / float64(b)
	return &x
}

// McNemar is McNemar's test on paired outcomes: B counts the cases only
// the first target got right, C those only the second did.
type McNemar struct {
	B, C int
	// Method is "exact_binomial" (B+C < McNemarExactBelow: the two-sided
	// binomial test of B against Binomial(B+C, 1/2)) or "chi_square_cc"
	// (chi-square with Edwards' continuity correction, 1 degree of
	// freedom).
	Method string
	// Statistic is the chi-square value (chi_square_cc only).
	Statistic *float64
	PValue    float64
}

// McNemarExactBelow is the number of discordant pairs below which the
// exact binomial test is used.
const McNemarExactBelow = 25

// McNemarTest runs McNemar's test on b and c discordant pairs.
func McNemarTest(b, c int) McNemar {
	m := McNemar{B: b, C: c}
	n := b + c
	if n < McNemarExactBelow {
		m.Method = "exact_binomial"
		m.PValue = exactBinomialTwoSided(min(b, c), n)
		return m
	}
	m.Method = "chi_square_cc"
	d := math.Abs(float64(b-c)) - 1
	if d < 0 {
		d = 0
	}
	chi := d * d / float64(n)
	m.Statistic = &chi
	m.PValue = math.Erfc(math.Sqrt(chi / 2)) // survival of chi-square with 1 df
	return m
}

// exactBinomialTwoSided is min(1, 2 P(X <= k)) for X ~ Binomial(n, 1/2):
// computed exactly with big integers, then rounded once.
func exactBinomialTwoSided(k, n int) float64 {
	if n == 0 {
		return 1
	}
	sum := new(big.Int)
	coef := big.NewInt(1) // C(n, 0)
	for i := 0; i <= k; i++ {
		sum.Add(sum, coef)
		coef.Mul(coef, big.NewInt(int64(n-i)))
		coef.Quo(coef, big.NewInt(int64(i+1)))
	}
	p, _ := new(big.Rat).SetFrac(new(big.Int).Mul(sum, big.NewInt(2)), new(big.Int).Lsh(big.NewInt(1), uint(n))).Float64()
	return min(1, p)
}

// CI is a 95% interval.
type CI [2]float64

// percentileCI returns the 2.5th and 97.5th percentiles of xs (sorted in
// place), nil for none.
func percentileCI(xs []float64) *CI {
	if len(xs) == 0 {
		return nil
	}
	slices.Sort(xs)
	return &CI{bench.Percentile(xs, 0.025), bench.Percentile(xs, 0.975)}
}

// sessionStat is what the bootstrap resamples: one session's cases, and its
// outcome when its last step is a case.
type sessionStat struct {
	cases, correct int
	hasOutcome     bool
	truthBuy       bool
	predBuy        bool
}

// bootstrapStats are the statistics recomputed on each resample.
type bootstrapStats struct {
	accuracy, micro, f1, macroF1 float64
	f1ok, macroOK                bool
}

func statsOf(ss []sessionStat, idx []int) bootstrapStats {
	var accSum float64
	var cases, correct int
	var conf [2][2]int // [truth][pred], 1 = purchase
	for _, i := range idx {
		s := ss[i]
		accSum += float64(s.correct) / float64(s.cases)
		cases += s.cases
		correct += s.correct
		if s.hasOutcome {
			conf[b2i(s.truthBuy)][b2i(s.predBuy)]++
		}
	}
	out := bootstrapStats{accuracy: accSum / float64(len(idx)), micro: float64(correct) / float64(cases)}
	out.f1, out.f1ok, out.macroF1, out.macroOK = outcomeF1(conf)
	return out
}

// outcomeF1 is the purchase class's F1 and the macro F1 (mean of both
// classes') of a confusion matrix [truth][pred]; macro is defined when
// both classes' are.
func outcomeF1(conf [2][2]int) (f1 float64, ok bool, macro float64, macroOK bool) {
	tp, fp, fn, tn := conf[1][1], conf[0][1], conf[1][0], conf[0][0]
	f1, ok = F1(tp, fp, fn)
	f0, ok0 := F1(tn, fn, fp)
	if ok && ok0 {
		macro, macroOK = (f1+f0)/2, true
	}
	return f1, ok, macro, macroOK
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// bootstrapCIs resamples the sessions (with replacement, as many as there
// are) reps times with a generator seeded by seed, and returns the
// percentile intervals of accuracy, micro accuracy, F1 and macro F1 (nil
// when a statistic was undefined in every resample). The F1 intervals are
// over the resamples where the statistic is defined.
func bootstrapCIs(ss []sessionStat, reps int, seed uint64) (acc, micro, f1, macro *CI) {
	if len(ss) == 0 || reps <= 0 {
		return nil, nil, nil, nil
	}
	rng := rand.New(rand.NewPCG(seed, 0xb0075))
	var accs, micros, f1s, macros []float64
	idx := make([]int, len(ss))
	for range reps {
		for i := range idx {
			idx[i] = rng.IntN(len(ss))
		}
		st := statsOf(ss, idx)
		accs = append(accs, st.accuracy)
		micros = append(micros, st.micro)
		if st.f1ok {
			f1s = append(f1s, st.f1)
		}
		if st.macroOK {
			macros = append(macros, st.macroF1)
		}
	}
	return percentileCI(accs), percentileCI(micros), percentileCI(f1s), percentileCI(macros)
}

// bootstrapDiffCI is the interval of the paired difference in accuracy
// (per session, then averaged) between two runs over the same sessions.
func bootstrapDiffCI(a, b []sessionStat, reps int, seed uint64) *CI {
	if len(a) == 0 || len(a) != len(b) || reps <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0xd1ff))
	diffs := make([]float64, 0, reps)
	idx := make([]int, len(a))
	for range reps {
		for i := range idx {
			idx[i] = rng.IntN(len(a))
		}
		diffs = append(diffs, statsOf(a, idx).accuracy-statsOf(b, idx).accuracy)
	}
	return percentileCI(diffs)
}
