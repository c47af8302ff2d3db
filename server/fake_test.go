package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nextact/nextact/batching"
)

// Tokens of the fake vocabulary: 0..255 are bytes, then end-of-generation
// tokens.
const (
	vocabSize = 300
	eogToken  = 256
	eotToken  = 257
)

// nextByte is the fake model's greedy choice after a token: printable ASCII
// that walks all 95 characters (quote and backslash included), so greedy
// text is predictable from the prompt's last byte alone.
func nextByte(last int32) int32 {
	return 32 + ((last-32+7)%95+95)%95
}

// greedyText is what the fake model generates after a prompt ending in last.
func greedyText(last byte, n int) string {
	b := make([]byte, n)
	t := int32(last)
	for i := range b {
		t = nextByte(t)
		b[i] = byte(t)
	}
	return string(b)
}

// fakeEngine is a deterministic batching.Engine and batching.Vocab. Its
// knobs are set before the scheduler starts.
type fakeEngine struct {
	// eogAfter > 0 makes a sequence's token after its eogAfter-th an EOG.
	eogAfter int
	// delay is slept in every Decode, so streams last a while.
	delay time.Duration
	// gate, when set, blocks every Decode until it is closed.
	gate chan struct{}
	// failAt > 0 makes the failAt-th Decode fail.
	failAt int

	mu      sync.Mutex
	decodes int
	hist    map[int32][]int32
	emitted map[int32]int // logits rows served per sequence
	rows    []int32       // per batch entry: the sequence, or -1
}

func newFakeEngine() *fakeEngine {
	return &fakeEngine{hist: map[int32][]int32{}, emitted: map[int32]int{}}
}

func (e *fakeEngine) Decode(b *batching.Batch) error {
	if e.gate != nil {
		<-e.gate
	}
	if e.delay > 0 {
		time.Sleep(e.delay)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.decodes++
	if e.failAt > 0 && e.decodes == e.failAt {
		return errors.New("fake engine failure")
	}
	e.rows = e.rows[:0]
	for i := range b.Len() {
		seq := b.Seq[i]
		h := e.hist[seq]
		if int(b.Pos[i]) != len(h) {
			return fmt.Errorf("seq %d: position %d, want %d", seq, b.Pos[i], len(h))
		}
		e.hist[seq] = append(h, b.Tokens[i])
		row := int32(-1)
		if b.Logits[i] {
			row = seq
		}
		e.rows = append(e.rows, row)
	}
	return nil
}

func (e *fakeEngine) Logits(i int) ([]float32, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i < 0 || i >= len(e.rows) || e.rows[i] < 0 {
		return nil, errors.New("no logits for that entry")
	}
	seq := e.rows[i]
	h := e.hist[seq]
	e.emitted[seq]++
	best := nextByte(h[len(h)-1])
	if e.eogAfter > 0 && e.emitted[seq] > e.eogAfter {
		best = eogToken
	}
	row := make([]float32, vocabSize)
	row[best] = 10
	return row, nil
}

func (e *fakeEngine) ClearSeq(seq int32) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.hist, seq)
	delete(e.emitted, seq)
	return nil
}

func (e *fakeEngine) Piece(t int32) string {
	if t < 256 {
		return string([]byte{byte(t)})
	}
	return ""
}

func (e *fakeEngine) IsEOG(t int32) bool { return t == eogToken || t == eotToken }

func (e *fakeEngine) Size() int { return vocabSize }

// fakeTokenizer maps each byte to its token and records what it was asked.
// delay, when set, is slept in every call (a slow preparation).
type fakeTokenizer struct {
	mu    sync.Mutex
	calls []tokenizeCall
	delay time.Duration
	// panicOn, when set, makes tokenizing a text that contains it panic.
	panicOn string
}

type tokenizeCall struct {
	text    string
	special bool
}

func (f *fakeTokenizer) Tokenize(text string, parseSpecial bool) ([]int32, error) {
	f.mu.Lock()
	f.calls = append(f.calls, tokenizeCall{text, parseSpecial})
	delay, panicOn := f.delay, f.panicOn
	f.mu.Unlock()
	if panicOn != "" && strings.Contains(text, panicOn) {
		panic("fake tokenizer: " + panicOn)
	}
	time.Sleep(delay)
	out := make([]int32, len(text))
	for i := range len(text) {
		out[i] = int32(text[i])
	}
	return out, nil
}

// specialFor reports how text was last tokenized.
func (f *fakeTokenizer) specialFor(text string) (special, found bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.calls) - 1; i >= 0; i-- {
		if f.calls[i].text == text {
			return f.calls[i].special, true
		}
	}
	return false, false
}

// errGenerator refuses every request with err.
type errGenerator struct{ err error }

func (g errGenerator) Submit(context.Context, batching.Request) (*batching.Handle, error) {
	return nil, g.err
}

// panicTokenizer panics, standing in for any bug in the serving path.
type panicTokenizer struct{}

func (panicTokenizer) Tokenize(string, bool) ([]int32, error) { panic("tokenizer bug") }
