package server_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/batchingtest"
)

// Tokens of the fake vocabulary: 0..255 are bytes, then end-of-generation
// tokens.
const (
	vocabSize = 300
	eogToken  = 256
	eotToken  = 257
)

// greedyText is what the fake model generates after a prompt ending in last.
func greedyText(last byte, n int) string { return batchingtest.WalkText(last, n) }

// fakeEngine holds the knobs of the test engine, set before the scheduler
// starts; engine builds it on batching's test kit: the kit's walk model
// (each greedy token follows from the last one, batchingtest.NextByte)
// behind an Engine whose Decode these knobs wrap.
type fakeEngine struct {
	// eogAfter > 0 makes a sequence's token after its eogAfter-th an EOG.
	eogAfter int
	// delay is slept in every Decode, so streams last a while.
	delay time.Duration
	// gate, when set, blocks every Decode until it is closed.
	gate chan struct{}
	// failAt > 0 makes the failAt-th Decode fail.
	failAt int
}

func newFakeEngine() *fakeEngine { return &fakeEngine{} }

// engine builds the engine and vocabulary the knobs describe.
func (f *fakeEngine) engine() (*batchingtest.Engine, *batchingtest.Model) {
	m := batchingtest.NewModel(vocabSize, []int32{eogToken, eotToken}, batchingtest.WalkNext(eogToken, f.eogAfter))
	e := m.Engine()
	decodes := 0 // the loop's goroutine alone calls Decode
	e.DecodeFunc = func(b *batching.Batch) error {
		if f.gate != nil {
			<-f.gate
		}
		time.Sleep(f.delay)
		if decodes++; decodes == f.failAt {
			return errors.New("fake engine failure")
		}
		return m.Decode(b)
	}
	return e, m
}

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
