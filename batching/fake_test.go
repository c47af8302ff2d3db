package batching_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/nextact/nextact/batching"
)

// fakeEngine is a deterministic stand-in for llama.cpp, used only where the
// real engine cannot stage a case (failures, blocking, exact batch plans).
// The next token after a history is a hash of the whole history, so any
// scheduler mix-up of positions or sequences changes the output. It checks
// what llama.cpp requires: positions of a sequence are consecutive from 0.
type fakeEngine struct {
	vocab int
	eog   int32
	noEOG bool          // never emit the EOG token
	delay time.Duration // per Decode, so requests overlap in time

	mu   sync.Mutex
	hist map[int32][]int32
	// rows[i] is the logits view of batch entry i (nil without logits).
	// The views point into bufs, which the next Decode overwrites in place
	// like llama.cpp's output buffer: a scheduler that reads a view after
	// the next Decode reads another step's logits (and, under -race,
	// races with the write).
	rows     [][]float32
	bufs     [][]float32
	batches  [][]int32 // seq id of every entry, per step
	failNext error     // returned by the next Decode
	// refuse, when >= 0, makes the first Decode that carries this sequence
	// return a *SeqError naming it.
	refuse    int32
	panicNext bool
	gate      chan struct{} // when set, Decode waits for a value
	cleared   map[int32]int
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{vocab: 260, eog: 256, refuse: -1, hist: map[int32][]int32{}, cleared: map[int32]int{}}
}

func (e *fakeEngine) Decode(b *batching.Batch) error {
	if e.gate != nil {
		<-e.gate
	}
	time.Sleep(e.delay)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.panicNext {
		e.panicNext = false
		panic("fake engine panic")
	}
	if err := e.failNext; err != nil {
		e.failNext = nil
		return err
	}
	if e.refuse >= 0 && slices.Contains(b.Seq, e.refuse) {
		seq := e.refuse
		e.refuse = -1
		return &batching.SeqError{Seq: seq, Err: errors.New("position out of range")}
	}
	seqs := append([]int32(nil), b.Seq...)
	e.batches = append(e.batches, seqs)
	for _, r := range e.bufs { // the last step's views are dead now
		for j := range r {
			r[j] = float32(math.NaN())
		}
	}
	e.rows = e.rows[:0]
	used := 0
	for i := range b.Len() {
		h := e.hist[b.Seq[i]]
		if int(b.Pos[i]) != len(h) {
			return fmt.Errorf("seq %d: position %d, want %d", b.Seq[i], b.Pos[i], len(h))
		}
		e.hist[b.Seq[i]] = append(h, b.Tokens[i])
		if !b.Logits[i] {
			e.rows = append(e.rows, nil)
			continue
		}
		if used == len(e.bufs) {
			e.bufs = append(e.bufs, make([]float32, e.vocab))
		}
		e.rows = append(e.rows, e.fillRow(e.bufs[used], e.hist[b.Seq[i]]))
		used++
	}
	return nil
}

// fillRow writes logits whose argmax is a hash of the history into r; the
// EOG token wins when the history's hash says so (about one step in 40).
func (e *fakeEngine) fillRow(r []float32, h []int32) []float32 {
	var x uint32 = 2166136261
	for _, t := range h {
		x = (x ^ uint32(t)) * 16777619
	}
	for i := range r {
		r[i] = float32((x>>uint(i%13))%7) * 0.1
	}
	best := int32(32 + x%90) // printable ASCII
	if x%40 == 0 && !e.noEOG {
		best = e.eog
	}
	r[best] = 10
	return r
}

func (e *fakeEngine) Logits(i int) ([]float32, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i < 0 || i >= len(e.rows) || e.rows[i] == nil {
		return nil, errors.New("no logits for that entry")
	}
	return e.rows[i], nil
}

func (e *fakeEngine) ClearSeq(seq int32) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.hist, seq)
	e.cleared[seq]++
	return nil
}

func (e *fakeEngine) Size() int { return e.vocab }

func (e *fakeEngine) IsEOG(t int32) bool { return t == e.eog }

func (e *fakeEngine) Piece(t int32) string {
	if t < 256 {
		return string([]byte{byte(t)})
	}
	return fmt.Sprintf("<%d>", t)
}

func (e *fakeEngine) held() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.hist)
}

// reusingEngine is the fake engine with KV reuse, so the prefix cache is on.
type reusingEngine struct{ *fakeEngine }

func (e reusingEngine) TrimSeq(seq int32, keep int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.hist[seq]
	if keep > len(h) {
		return fmt.Errorf("trim seq %d to %d: it holds %d", seq, keep, len(h))
	}
	e.hist[seq] = h[:keep:keep]
	return nil
}

func (e reusingEngine) CopySeq(src, dst int32) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hist[dst] = append([]int32(nil), e.hist[src]...)
	return nil
}
