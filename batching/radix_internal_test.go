package batching

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// randomSeq draws a sequence over a tiny alphabet from one of a few
// stems, so sequences share prefixes of every length.
func randomSeq(r *rand.Rand, stems [][]int32) []int32 {
	seq := append([]int32(nil), stems[r.IntN(len(stems))][:r.IntN(40)]...)
	for range r.IntN(30) {
		seq = append(seq, int32(r.IntN(3)))
	}
	return seq
}

// The index agrees with a brute-force longest-common-prefix scan after
// any sequence of set and remove, and leaves no node behind once empty.
func TestPrefixIndexMatchesScan(t *testing.T) {
	t.Parallel()
	const slots = 16
	r := rand.New(rand.NewPCG(1, 2))
	var stems [][]int32
	for range 4 {
		stem := make([]int32, 40)
		for i := range stem {
			stem[i] = int32(r.IntN(3))
		}
		stems = append(stems, stem)
	}
	x := newPrefixIndex(slots)
	held := make([][]int32, slots)
	got := make([]int, slots)
	for op := range 20000 {
		slot := int32(r.IntN(slots))
		if r.IntN(4) == 0 {
			x.remove(slot)
			held[slot] = nil
		} else {
			seq := randomSeq(r, stems)
			x.set(slot, seq)
			held[slot] = seq
			if len(seq) > 0 {
				held[slot] = append([]int32(nil), seq...)
				seq[0] = -1 // the index keeps its own copy
			}
		}
		prompt := randomSeq(r, stems)
		x.match(prompt, got)
		for i := range slots {
			want := 0
			if held[i] != nil {
				want = commonPrefix(prompt, held[i])
			}
			if got[i] != want {
				t.Fatalf("op %d: slot %d matches %d of %v, want %d (holds %v)", op, i, got[i], prompt, want, held[i])
			}
		}
	}
	for i := range int32(slots) {
		x.remove(i)
	}
	if len(x.root.children) != 0 || !x.root.slots.empty() {
		t.Fatalf("empty index keeps %d children, slots %v", len(x.root.children), x.root.slots)
	}
}

// The index copies what it is given: a caller reusing its buffer does
// not change what a slot is said to hold.
func TestPrefixIndexCopies(t *testing.T) {
	t.Parallel()
	x := newPrefixIndex(2)
	buf := []int32{1, 2, 3, 4}
	x.set(0, buf)
	buf[2] = 9
	got := make([]int, 2)
	x.match([]int32{1, 2, 3, 4}, got)
	if got[0] != 4 || got[1] != 0 {
		t.Fatalf("matches %v, want [4 0]", got)
	}
}

// BenchmarkPrefixLookup is admission's prefix search over full slots that
// share a long prefix (a fleet with one system prompt and persona family):
// the radix tree against a scan of every slot.
func BenchmarkPrefixLookup(b *testing.B) {
	for _, slots := range []int{32, 256} {
		const shared, length = 2000, 8000
		r := rand.New(rand.NewPCG(3, 4))
		seqs := make([][]int32, slots)
		for i := range seqs {
			seqs[i] = make([]int32, length)
			for j := range seqs[i] {
				if j < shared {
					seqs[i][j] = int32(j % 1000)
				} else {
					seqs[i][j] = int32(r.IntN(100000))
				}
			}
		}
		prompt := append(append([]int32(nil), seqs[slots/2]...), 1, 2, 3)
		x := newPrefixIndex(slots)
		for i, s := range seqs {
			x.set(int32(i), s)
		}
		out := make([]int, slots)
		b.Run(fmt.Sprintf("radix/slots=%d", slots), func(b *testing.B) {
			for b.Loop() {
				x.match(prompt, out)
			}
		})
		b.Run(fmt.Sprintf("scan/slots=%d", slots), func(b *testing.B) {
			for b.Loop() {
				for i, s := range seqs {
					out[i] = commonPrefix(prompt, s)
				}
			}
		})
	}
}
