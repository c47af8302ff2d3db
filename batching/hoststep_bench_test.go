package batching_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/batchingtest"
)

// Host work of one scheduler step at the size: 128 running
// sequences, a 128,256-token vocabulary (Llama 3's), on an engine that
// returns logits at once, so a step costs only what the scheduler does
// around the engine. See docs/PERFORMANCE.md.
const (
	hostSeqs  = 128
	hostVocab = 128256
)

// hostEngine decodes instantly. Its logits rows are allocated once; with
// copyRows every Logits call returns a fresh copy of the row, as the
// wrapper's GetLogitsIth did (an allocation and a copy per sequence per
// step), else a view of the row. It counts steps, so a benchmark can wait
// for n of them.
type hostEngine struct {
	batchingtest.Engine
	batchingtest.Vocab

	mu    sync.Mutex
	steps int64
	want  int64
	ch    chan struct{}
}

var hostRowsOnce = sync.OnceValue(func() [][]float32 {
	r := rand.New(rand.NewPCG(7, 11))
	rows := make([][]float32, hostSeqs)
	for i := range rows {
		rows[i] = make([]float32, hostVocab)
		for j := range rows[i] {
			rows[i][j] = float32(r.NormFloat64() * 3)
		}
	}
	return rows
})

func newHostEngine(copyRows bool) *hostEngine {
	rows := hostRowsOnce()
	e := &hostEngine{Vocab: batchingtest.Vocab{N: hostVocab}}
	e.DecodeFunc = func(*batching.Batch) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.steps++
		if e.ch != nil && e.steps >= e.want {
			close(e.ch)
			e.ch = nil
		}
		return nil
	}
	e.LogitsFunc = func(i int) ([]float32, error) {
		r := rows[i%len(rows)]
		if copyRows {
			return append(make([]float32, 0, len(r)), r...), nil
		}
		return r, nil
	}
	return e
}

// waitSteps blocks until the engine has decoded n more steps.
func (e *hostEngine) waitSteps(n int) {
	e.mu.Lock()
	ch := make(chan struct{})
	e.want, e.ch = e.steps+int64(n), ch
	e.mu.Unlock()
	<-ch
}

func benchHostStep(b *testing.B, copyRows bool, workers int, p batching.Sampling) {
	e := newHostEngine(copyRows)
	const ctxLen = 1 << 22
	s, err := batching.New(e, e, batching.Config{Slots: hostSeqs, QueueSize: hostSeqs, StepTokens: hostSeqs, CtxPerSlot: ctxLen, SampleWorkers: workers}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for i := range hostSeqs {
		seed := uint64(i)
		p.Seed = &seed
		if _, err := s.Submit(ctx, batching.Request{Prompt: []int32{int32(i)}, MaxTokens: ctxLen - 1, Sampling: p}); err != nil {
			b.Fatal(err)
		}
	}
	e.waitSteps(10) // every sequence admitted and decoding
	if st := s.Stats(); st.Running != hostSeqs {
		b.Fatalf("%d sequences running, want %d", st.Running, hostSeqs)
	}
	b.ReportAllocs()
	b.ResetTimer()
	e.waitSteps(b.N)
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/step")
	cancel()
	_ = s.Close(context.Background())
}

// BenchmarkHostStep: greedy is the target (at most 2x one read of
// the 64 MiB of logits, BenchmarkLogitsRead); "copy-serial" is the old
// path (a copied row per sequence, sampled one after the other) on this
// scheduler.
func BenchmarkHostStep(b *testing.B) {
	b.Run("greedy", func(b *testing.B) { benchHostStep(b, false, 0, batching.Sampling{}) })
	b.Run("greedy-serial", func(b *testing.B) { benchHostStep(b, false, 1, batching.Sampling{}) })
	b.Run("greedy-copy-serial", func(b *testing.B) { benchHostStep(b, true, 1, batching.Sampling{}) })
	b.Run("temperature", func(b *testing.B) { benchHostStep(b, false, 0, batching.Sampling{Temperature: 0.8}) })
	b.Run("top-p", func(b *testing.B) { benchHostStep(b, false, 0, batching.Sampling{Temperature: 0.8, TopP: 0.9}) })
}

var readSink atomic.Uint32

// sumRow reads a row once (four independent sums, so the loop runs at the
// memory's speed, not the adder's latency).
func sumRow(r []float32) float32 {
	var a, b, c, d float32
	i := 0
	for ; i+4 <= len(r); i += 4 {
		a += r[i]
		b += r[i+1]
		c += r[i+2]
		d += r[i+3]
	}
	for ; i < len(r); i++ {
		a += r[i]
	}
	return a + b + c + d
}

// BenchmarkLogitsRead is the memory-bound reference: one plain read of
// 128 x 128,256 float32 (64 MiB), by one goroutine and by GOMAXPROCS.
func BenchmarkLogitsRead(b *testing.B) {
	rows := hostRowsOnce()
	b.Run("one-goroutine", func(b *testing.B) {
		for b.Loop() {
			var s float32
			for _, r := range rows {
				s += sumRow(r)
			}
			readSink.Add(uint32(s))
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/read")
	})
	b.Run("gomaxprocs", func(b *testing.B) {
		w := runtime.GOMAXPROCS(0)
		for b.Loop() {
			var wg sync.WaitGroup
			for k := range w {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var s float32
					for i := k; i < len(rows); i += w {
						s += sumRow(rows[i])
					}
					readSink.Add(uint32(s))
				}()
			}
			wg.Wait()
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/read")
	})
}
