package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/client"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// llama3VocabSpec is the embedded model with a vocabulary the size of
// Llama 3's (128,256 entries): what grammar masking costs at that size.
func llama3VocabSpec() models.Spec {
	s := models.DefaultSpec()
	s.Name = "nextact-tiny-128k"
	s.ExtraTokens = 128256 - 256 - s.Merges - 11
	return s
}

// BenchmarkActions measures next-action steps/s and per-step latency,
// constrained (/v1/actions/next) against unconstrained decoding of the same
// prompts for the same number of tokens (/v1/chat/completions with
// max_tokens set to what the constrained answer took), at 1 and 32
// concurrent requests, on the embedded model and on one with a 128k
// vocabulary; and the same for structured outputs under a JSON schema of
// the corpus (s-steps/s against su-steps/s, s-ratio).
//
//	make bench BENCH=Actions PKG=./cmd/nextact BENCHTIME=1x
func BenchmarkActions(b *testing.B) {
	big := filepath.Join(cacheDir, "bench-128k.gguf")
	if err := models.Generate(big, llama3VocabSpec()); err != nil {
		b.Fatal(err)
	}
	for _, m := range []struct{ name, path string }{{"embedded", ""}, {"vocab128k", big}} {
		for _, conc := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/c=%d", m.name, conc), func(b *testing.B) { benchActions(b, m.path, conc) })
		}
	}
}

func benchActions(b *testing.B, model string, conc int) {
	c := testConfig()
	if model != "" { // else the embedded model
		c.Models = pathList{model}
	}
	c.Slots = 32
	c.Ctx = 2048
	c.StepTokens = 512
	c.Threads = 0
	c.Queue = 512
	c.MaxRationaleBytes = 200
	// Every half sends the same prompts: with the prefix cache, a half
	// would find the prompts of the one before in the slots' KV and skip
	// their prefill, which the first half cannot. Off, every half
	// computes its prompts, and the ratios compare decoding alone.
	c.NoPrefixCache = true
	ts := startServer(b, c)
	cl := client.New(ts.URL)
	rng := rand.New(rand.NewPCG(9, 9))
	const steps = 64
	pages := make([]string, steps)
	for i := range pages {
		pages[i], _, _, _ = nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 12, MaxInputs: 3, ApproxBytes: -1})
	}
	tokens, schemaTokens := make([]int, steps), make([]int, steps)
	wire := make([][]map[string]string, steps)
	for i := range wire {
		msgs, err := nextaction.BuildPrompt(nextaction.FormatPrompted, nextaction.PromptInput{Page: pages[i]})
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range msgs {
			wire[i] = append(wire[i], map[string]string{"role": m.Role, "content": m.Content})
		}
	}
	var schema []byte
	for _, s := range nextactiontest.SchemaCorpus(b) {
		if s.Name == "03-pydantic-shopper-next-action" {
			schema = s.JSON
		}
	}
	run := func(do func(i int) (time.Duration, error)) (stepsPerSec, p50, p90 float64) {
		lat := make([]time.Duration, steps)
		var wg sync.WaitGroup
		sem := make(chan struct{}, conc)
		start := time.Now()
		for i := range steps {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				d, err := do(i)
				if err != nil {
					b.Error(err)
				}
				lat[i] = d
			}()
		}
		wg.Wait()
		el := time.Since(start)
		q := quantiles(lat, 0.5, 0.9)
		return float64(steps) / el.Seconds(), q[0], q[1]
	}
	temp := 0.0
	b.ResetTimer()
	for range b.N {
		cs, cp50, cp90 := run(func(i int) (time.Duration, error) {
			s := time.Now()
			res, err := cl.NextAction(context.Background(), nextaction.NextActionRequest{Model: ts.modelID(), Page: pages[i], Temperature: &temp, MaxTokens: 128})
			if err == nil {
				tokens[i] = res.Usage.CompletionTokens
			}
			return time.Since(s), err
		})
		unconstrained := func(tokens []int) func(i int) (time.Duration, error) {
			return func(i int) (time.Duration, error) {
				s := time.Now()
				code, _, out := post(b, ts.URL+"/v1/chat/completions", map[string]any{"model": ts.modelID(), "messages": wire[i], "temperature": 0, "max_tokens": tokens[i]})
				if code != 200 {
					return 0, fmt.Errorf("status %d: %v", code, out)
				}
				return time.Since(s), nil
			}
		}
		us, up50, up90 := run(unconstrained(tokens))
		// Structured outputs: a JSON schema of the corpus (free JSON
		// strings, any UTF-8, a oneOf of $refs) on the same prompts.
		ss, _, _ := run(func(i int) (time.Duration, error) {
			s := time.Now()
			code, _, out := post(b, ts.URL+"/v1/chat/completions", map[string]any{"model": ts.modelID(), "messages": wire[i], "temperature": 0, "max_tokens": 128,
				"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "next", "schema": json.RawMessage(schema)}}})
			if code != 200 {
				return 0, fmt.Errorf("status %d: %v", code, out)
			}
			usage, _ := out["usage"].(map[string]any)
			n, _ := usage["completion_tokens"].(float64)
			schemaTokens[i] = int(n)
			return time.Since(s), nil
		})
		su, _, _ := run(unconstrained(schemaTokens))
		b.ReportMetric(ss, "s-steps/s")
		b.ReportMetric(su, "su-steps/s")
		b.ReportMetric(ss/su, "s-ratio")
		b.ReportMetric(cs, "c-steps/s")
		b.ReportMetric(us, "u-steps/s")
		b.ReportMetric(cs/us, "ratio")
		b.ReportMetric(cp50, "c-p50-ms")
		b.ReportMetric(cp90, "c-p90-ms")
		b.ReportMetric(up50, "u-p50-ms")
		b.ReportMetric(up90, "u-p90-ms")
	}
}

// quantiles of durations, in milliseconds.
func quantiles(d []time.Duration, qs ...float64) []float64 {
	s := append([]time.Duration(nil), d...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	out := make([]float64, len(qs))
	for i, q := range qs {
		out[i] = float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds()) / 1000
	}
	return out
}
