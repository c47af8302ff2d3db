package batching

import (
	"math"
	"strings"
	"testing"
)

func TestTextStateStopsAcrossPieces(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		stops  []string
		pieces []string
		want   string // all emitted text
		stop   bool
	}{
		{"no stops", nil, []string{"ab", "cd"}, "abcd", false},
		{"stop inside piece", []string{"END"}, []string{"abENDcd"}, "ab", true},
		{"stop across pieces", []string{"END"}, []string{"ab", "E", "N", "Dxx"}, "ab", true},
		{"false start released", []string{"END"}, []string{"ab", "EN", "x"}, "abENx", false},
		{"earliest of two", []string{"zz", "b"}, []string{"abzz"}, "a", true},
		{"utf8 split held", nil, []string{"caf\xc3", "\xa9!"}, "café!", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := textState{stops: tc.stops}
			var got strings.Builder
			stopped := false
			for _, p := range tc.pieces {
				out, st := ts.push(p)
				got.WriteString(out)
				if st {
					stopped = true
					break
				}
			}
			if !stopped {
				got.WriteString(ts.flush())
			}
			if got.String() != tc.want || stopped != tc.stop {
				t.Fatalf("got %q stop=%v, want %q stop=%v", got.String(), stopped, tc.want, tc.stop)
			}
		})
	}
}

func TestTextStateHoldsIncompleteUTF8(t *testing.T) {
	t.Parallel()
	ts := textState{}
	if out, _ := ts.push("a\xe2\x82"); out != "a" {
		t.Fatalf("emitted %q before the character was complete", out)
	}
	if out, _ := ts.push("\xac"); out != "€" {
		t.Fatalf("got %q, want the completed character", out)
	}
}

func TestSamplerGreedyAndSeeded(t *testing.T) {
	t.Parallel()
	logits := []float32{0.1, 2, 1.9, -3, 2}
	if got := newSampler(Sampling{}, 1).must(t, logits, &sampleScratch{}); got != 1 {
		t.Fatalf("greedy picked %d, want the first maximum 1", got)
	}
	if got := newSampler(Sampling{Temperature: 1, TopK: 1}, 7).must(t, logits, &sampleScratch{}); got != 1 {
		t.Fatalf("top_k=1 picked %d", got)
	}
	if got := newSampler(Sampling{Temperature: 1, TopP: 0.01}, 7).must(t, logits, &sampleScratch{}); got != 1 {
		t.Fatalf("tiny top_p picked %d", got)
	}
	draw := func(seed uint64) []int32 {
		s := newSampler(Sampling{Temperature: 1.5}, seed)
		var out []int32
		for range 50 {
			out = append(out, s.must(t, logits, &sampleScratch{}))
		}
		return out
	}
	a, b, c := draw(3), draw(3), draw(4)
	if !equal(a, b) {
		t.Fatal("same seed gave different draws")
	}
	if equal(a, c) {
		t.Fatal("different seeds gave the same 50 draws")
	}
	seen := map[int32]bool{}
	for _, x := range a {
		seen[x] = true
	}
	if len(seen) < 3 || seen[3] {
		t.Fatalf("temperature 1.5 drew %v", seen)
	}
}

func TestSamplerMatchesDistribution(t *testing.T) {
	t.Parallel()
	logits := []float32{0, float32(math.Log(3))} // p = 1/4, 3/4
	s := newSampler(Sampling{Temperature: 1}, 11)
	ones := 0
	const n = 20000
	for range n {
		ones += int(s.must(t, logits, &sampleScratch{}))
	}
	if f := float64(ones) / n; math.Abs(f-0.75) > 0.02 {
		t.Fatalf("drew token 1 with frequency %.3f, want 0.75", f)
	}
}

func equal(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
