package llamacpp_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// BenchmarkLogprobs is the cost of logprobs at 32 concurrent requests on
// the real engine: each iteration runs the same 32 greedy requests of 32
// tokens at once, without logprobs ("off") and with logprobs and
// top_logprobs 5 ("top5"); the outputs, and so the steps, are the same,
// so steps/s compares the two. For the embedded model and for a generated
// model with Llama 3's 128,256-token vocabulary (the logprobs' host work
// grows with the vocabulary). See docs/PERFORMANCE.md.
func BenchmarkLogprobs(b *testing.B) {
	big := filepath.Join(tempRoot, "vocab128k.gguf")
	s := models.DefaultSpec()
	s.Name, s.ExtraTokens = "vocab128k", 128256-256-s.Merges-11
	if err := models.Generate(big, s); err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct{ name, path string }{{"embedded", testModel(b)}, {"vocab128k", big}} {
		e, err := llamacpp.Open(llamacpp.Config{ModelPath: m.path, GPULayers: llamacpp.GPULayersAuto, Slots: 32, CtxPerSlot: 256, StepTokens: 512, Threads: 1, Deterministic: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		sched, err := batching.New(e, e, batching.Config{Slots: 32, QueueSize: 64, StepTokens: 512, CtxPerSlot: 256, NoPrefixCache: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, top := range []int{-1, 5} {
			name := "off"
			if top >= 0 {
				name = fmt.Sprintf("top%d", top)
			}
			b.Run(m.name+"/"+name, func(b *testing.B) {
				steps := sched.Stats().Steps
				start := time.Now()
				for range b.N {
					runRound(b, sched, top)
				}
				d := time.Since(start)
				b.ReportMetric(float64(sched.Stats().Steps-steps)/d.Seconds(), "steps/s")
			})
		}
		_ = sched.Close(context.Background())
		e.Close()
	}
}

// runRound runs 32 greedy requests of 32 tokens at once (logprobs with
// top top when top >= 0).
func runRound(b *testing.B, s *batching.Scheduler, top int) {
	var wg sync.WaitGroup
	for i := range 32 {
		r := batching.Request{Prompt: []int32{int32(300 + i), int32(400 + i), int32(500 + 2*i)}, MaxTokens: 32}
		if top >= 0 {
			r.Logprobs, r.TopLogprobs = true, top
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := s.Submit(context.Background(), r)
			if err != nil {
				b.Error(err)
				return
			}
			if c, err := h.Wait(context.Background()); err != nil || c.Err != nil {
				b.Error(err, c.Err)
			}
		}()
	}
	wg.Wait()
}
