package llamacpp_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// BenchmarkLogprobs is the cost of logprobs at 32 concurrent requests on
// the real engine: each iteration runs the same 32 greedy requests of 32
// tokens at once, without logprobs and then with logprobs and
// top_logprobs 5, the two rounds back to back (so a change of the shared
// machine's load falls on both alike); the outputs are the same. It
// reports each half's steps/s and their ratio (logprobs over none). For
// the embedded model and for a generated model with Llama 3's
// 128,256-token vocabulary (the logprobs' host work grows with the
// vocabulary). See docs/PERFORMANCE.md.
func BenchmarkLogprobs(b *testing.B) {
	big := filepath.Join(tempRoot, "vocab128k.gguf")
	s := models.DefaultSpec()
	s.Name, s.ExtraTokens = "vocab128k", 128256-256-s.Merges-11
	if err := models.Generate(big, s); err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct{ name, path string }{{"embedded", testModel(b)}, {"vocab128k", big}} {
		b.Run(m.name, func(b *testing.B) {
			e, err := llamacpp.Open(llamacpp.Config{ModelPath: m.path, GPULayers: llamacpp.GPULayersAuto, Slots: 32, CtxPerSlot: 256, StepTokens: 512, Threads: 1, Deterministic: true}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			sched, err := batching.New(e, e, batching.Config{Slots: 32, QueueSize: 64, StepTokens: 512, CtxPerSlot: 256, NoPrefixCache: true}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = sched.Close(context.Background()) }()
			var time0, time5 time.Duration
			var steps0, steps5 uint64
			round := func(top int, d *time.Duration, steps *uint64) {
				st, start := sched.Stats().Steps, time.Now()
				runRound(b, sched, top)
				*d += time.Since(start)
				*steps += sched.Stats().Steps - st
			}
			for range b.N {
				round(-1, &time0, &steps0)
				round(5, &time5, &steps5)
			}
			off, top5 := float64(steps0)/time0.Seconds(), float64(steps5)/time5.Seconds()
			b.ReportMetric(off, "off-steps/s")
			b.ReportMetric(top5, "top5-steps/s")
			b.ReportMetric(top5/off, "ratio")
		})
	}
}

// runRound submits 32 greedy requests of 32 tokens (logprobs with top
// top when top >= 0) one after the other (Submit does not block), then
// waits for them all.
func runRound(b *testing.B, s *batching.Scheduler, top int) {
	hs := make([]*batching.Handle, 0, 32)
	for i := range 32 {
		r := batching.Request{Prompt: []int32{int32(300 + i), int32(400 + i), int32(500 + 2*i)}, MaxTokens: 32}
		if top >= 0 {
			r.Logprobs, r.TopLogprobs = true, top
		}
		h, err := s.Submit(context.Background(), r)
		if err != nil {
			b.Fatal(err)
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		if c, err := h.Wait(context.Background()); err != nil || c.Err != nil {
			b.Fatal(err, c.Err)
		}
	}
}

// BenchmarkExpSum is the engine's vectorised sum of exp over one
// 128,256-token row (normal logits, sd 3): the bulk of one token's
// logprobs (compare BenchmarkRowLogprobs in batching, the Go sum).
func BenchmarkExpSum(b *testing.B) {
	e := open(b, 1, 64, 16)
	r := rand.New(rand.NewPCG(7, 11))
	row := make([]float32, 128256)
	for i := range row {
		row[i] = float32(r.NormFloat64() * 3)
	}
	for _, n := range []int{4096, len(row)} {
		scratch := make([]float32, n)
		b.Run(fmt.Sprintf("scratch-%d", n), func(b *testing.B) {
			for b.Loop() {
				e.ExpSum(row, 14, scratch)
			}
		})
	}
}
