package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// benchPrompts are mixed-length prompts; request i uses benchPrompts[i%len].
var benchPrompts = []string{
	"The shopper opens the product page and",
	`<div name="results"><a name="columbia_shirt.view_product">Columbia Shirt</a><button name="columbia_shirt.add_to_cart">Add</button></div>`,
	"Rationale: I want a cheaper jacket, so I",
	"hi",
}

const benchMaxTokens = 64

func benchConfig(slots int) serveConfig {
	c := testConfig()
	c.Slots = slots
	c.Ctx = 512
	c.StepTokens = 512
	c.Threads = 0 // the serve default
	c.Queue = 256
	return c
}

// BenchmarkDecode compares aggregate decode tokens/s through HTTP (server,
// scheduler, engine) with a bare batched loop driving an identical engine
// directly, at 1, 8 and 32 concurrent requests. One iteration is one round
// of `c` requests of benchMaxTokens greedy tokens each.
//
//	make bench BENCH=Decode PKG=./cmd/nextact
func BenchmarkDecode(b *testing.B) {
	for _, conc := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("http/c=%d", conc), func(b *testing.B) { benchHTTP(b, conc) })
		b.Run(fmt.Sprintf("bare/c=%d", conc), func(b *testing.B) { benchBare(b, conc) })
	}
}

func benchHTTP(b *testing.B, conc int) {
	ts := startServer(b, benchConfig(32))
	url := ts.URL + "/v1/completions"
	var tokens atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		var wg sync.WaitGroup
		for i := range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _, out := post(b, url, map[string]any{
					"model": ts.modelID(), "prompt": benchPrompts[i%len(benchPrompts)],
					"max_tokens": benchMaxTokens, "temperature": 0,
				})
				if code != 200 {
					b.Errorf("status %d: %v", code, out)
					return
				}
				tokens.Add(int64(out["usage"].(map[string]any)["completion_tokens"].(float64)))
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(tokens.Load())/time.Since(start).Seconds(), "tok/s")
}

func benchBare(b *testing.B, conc int) {
	c := benchConfig(32)
	path := testModelPath(b)
	e, err := llamacpp.Open(llamacpp.Config{ModelPath: path, GPULayers: -1, Slots: c.Slots, CtxPerSlot: c.Ctx, StepTokens: c.StepTokens, Threads: c.Threads, FlashAttention: c.FlashAttention}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	prompts := make([][]int32, conc)
	for i := range prompts {
		p, err := e.Tokenize(benchPrompts[i%len(benchPrompts)], true)
		if err != nil {
			b.Fatal(err)
		}
		prompts[i] = append(e.BOS(), p...)
	}
	var tokens int
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		n, err := bareRound(e, prompts, benchMaxTokens, c.StepTokens)
		if err != nil {
			b.Fatal(err)
		}
		tokens += n
	}
	b.ReportMetric(float64(tokens)/time.Since(start).Seconds(), "tok/s")
}

// bareRound prefills every prompt (chunked under the step budget), then
// decodes all sequences in lockstep with greedy sampling until each hits an
// end-of-generation token or maxTokens. It returns the tokens generated.
func bareRound(e *llamacpp.Engine, prompts [][]int32, maxTokens, step int) (int, error) {
	type seq struct {
		pos, n int
		next   int32
		row    int
		done   bool
	}
	seqs := make([]seq, len(prompts))
	var b batching.Batch
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		if err := e.Decode(&b); err != nil {
			return err
		}
		for i := range seqs {
			if s := &seqs[i]; s.row >= 0 && !s.done {
				l, err := e.Logits(s.row)
				if err != nil {
					return err
				}
				s.next = argmaxF(l)
				s.n++
				s.done = e.IsEOG(s.next) || s.n >= maxTokens
				s.row = -1
			}
		}
		b.Reset()
		return nil
	}
	for i := range seqs {
		seqs[i].row = -1
	}
	for i, p := range prompts {
		for j, t := range p {
			if b.Len() == step {
				if err := flush(); err != nil {
					return 0, err
				}
			}
			last := j == len(p)-1
			if last {
				seqs[i].row = b.Len()
			}
			b.Add(t, int32(j), int32(i), last)
		}
		seqs[i].pos = len(p)
	}
	if err := flush(); err != nil {
		return 0, err
	}
	for {
		for i := range seqs {
			if s := &seqs[i]; !s.done {
				s.row = b.Len()
				b.Add(s.next, int32(s.pos), int32(i), true)
				s.pos++
			}
		}
		if b.Len() == 0 {
			break
		}
		if err := flush(); err != nil {
			return 0, err
		}
	}
	total := 0
	for i, s := range seqs {
		total += s.n
		if err := e.ClearSeq(int32(i)); err != nil {
			return 0, err
		}
	}
	return total, nil
}

func argmaxF(l []float32) int32 {
	best := 0
	for i, v := range l {
		if v > l[best] {
			best = i
		}
	}
	return int32(best)
}
