package main

// GPU checks, run by scripts/gpu-check.sh on a machine with a GPU and the
// CUDA backend in lib/ollama (docs/GPU.md). Each is skipped unless
// NEXTACT_GPU_MODEL names a model, so make test runs none of them.
// NEXTACT_GPU_DETERMINISTIC=0 runs them with --deterministic=false.
// Figures go to the test log as lines starting "GPU-CHECK".

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// gpuSlots is the sweep's largest concurrency: every request has a slot.
const gpuSlots = 128

func gpuCheckConfig(t *testing.T) serveConfig {
	t.Helper()
	model := os.Getenv("NEXTACT_GPU_MODEL")
	if model == "" {
		t.Skip("NEXTACT_GPU_MODEL is not set (scripts/gpu-check.sh sets it)")
	}
	c := testConfig()
	c.Models, c.ModelID = pathList{model}, "gpu-check"
	c.Slots, c.Ctx, c.Queue = gpuSlots, 2048, 1024
	c.StepTokens = 0 // by device
	c.Threads = 4
	if n, err := strconv.Atoi(os.Getenv("NEXTACT_GPU_THREADS")); err == nil {
		c.Threads = n
	}
	c.Deterministic = os.Getenv("NEXTACT_GPU_DETERMINISTIC") != "0"
	c.RequestTimeout = 10 * time.Minute
	c.MaxQueueWait = 0 // no bound: the sweep queues nothing, the invariance check waits its turn
	return c
}

// gpuReport prints one figure line on stdout for the check script.
func gpuReport(format string, args ...any) {
	label := "deterministic"
	if os.Getenv("NEXTACT_GPU_DETERMINISTIC") == "0" {
		label = "fast"
	}
	fmt.Printf("GPU-CHECK %s %s %s\n", os.Getenv("NEXTACT_GPU_LABEL"), label, fmt.Sprintf(format, args...))
}

type completion struct {
	text   string
	tokens int
	dur    time.Duration
}

// complete sends one greedy /v1/completions request.
func complete(url, prompt string, maxTokens int) (completion, error) {
	body, _ := json.Marshal(map[string]any{"model": "gpu-check", "prompt": prompt, "max_tokens": maxTokens, "temperature": 0})
	start := time.Now()
	resp, err := http.Post(url+"/v1/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		return completion{}, err
	}
	defer resp.Body.Close()
	var out struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || len(out.Choices) != 1 {
		return completion{}, fmt.Errorf("status %d: %v", resp.StatusCode, err)
	}
	return completion{text: out.Choices[0].Text, tokens: out.Usage.CompletionTokens, dur: time.Since(start)}, nil
}

func gpuPrompt(i int) string {
	return fmt.Sprintf("Shopper %d opens the product page of item %d, reads the reviews and", i, i*7919%1000)
}

// TestGPUServe serves the model once and runs the decode sweep and the
// batch-invariance check on it (NEXTACT_GPU_CHECKS=sweep,invariance
// chooses).
func TestGPUServe(t *testing.T) {
	c := gpuCheckConfig(t)
	ts := startServer(t, c)
	if _, err := complete(ts.URL, "warm up", 8); err != nil {
		t.Fatal(err)
	}
	checks := os.Getenv("NEXTACT_GPU_CHECKS")
	if checks == "" || strings.Contains(checks, "sweep") {
		t.Run("sweep", func(t *testing.T) { gpuSweep(t, ts) })
	}
	if checks == "" || strings.Contains(checks, "invariance") {
		t.Run("invariance", func(t *testing.T) { gpuInvariance(t, ts, c.Deterministic) })
	}
}

// gpuSweep: aggregate greedy decode tokens/s of c concurrent
// /v1/completions requests of 256 tokens, for c = 1, 8, 64, 128 (the
// issue's figures; NEXTACT_GPU_SWEEP=1,64 chooses), through the whole
// stack, with the engine steps they took.
func gpuSweep(t *testing.T, ts *testServer) {
	levels := []int{1, 8, 64, 128}
	if s := os.Getenv("NEXTACT_GPU_SWEEP"); s != "" {
		levels = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 || n > gpuSlots {
				t.Fatalf("NEXTACT_GPU_SWEEP=%q", s)
			}
			levels = append(levels, n)
		}
	}
	for _, conc := range levels {
		steps0 := ts.stack.sched.Stats().Steps
		var mu sync.Mutex
		var tokens int
		var lat []time.Duration
		var wg sync.WaitGroup
		start := time.Now()
		for i := range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := complete(ts.URL, gpuPrompt(i), 256)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				tokens += r.tokens
				if r.tokens > 1 {
					lat = append(lat, r.dur/time.Duration(r.tokens))
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		wall := time.Since(start)
		steps := ts.stack.sched.Stats().Steps - steps0
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		p50 := time.Duration(0)
		if len(lat) > 0 {
			p50 = lat[len(lat)/2]
		}
		gpuReport("decode c=%d tokens=%d wall=%.2fs tok/s=%.0f steps=%d ms/step=%.2f per-request-ms/token-p50=%.2f",
			conc, tokens, wall.Seconds(), float64(tokens)/wall.Seconds(), steps, wall.Seconds()*1000/float64(max(steps, 1)), float64(p50.Microseconds())/1000)
	}
}

// gpuInvariance: 64 greedy prompts (NEXTACT_GPU_INVARIANCE_PROMPTS)
// served alone, one after the other, then all at once; the target
// is 0 of 64 differing. With --deterministic a difference fails the test.
func gpuInvariance(t *testing.T, ts *testServer, deterministic bool) {
	n, maxTokens := 64, 64
	if s := os.Getenv("NEXTACT_GPU_INVARIANCE_PROMPTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	solo := make([]completion, n)
	start := time.Now()
	for i := range n {
		r, err := complete(ts.URL, gpuPrompt(i), maxTokens)
		if err != nil {
			t.Fatal(err)
		}
		solo[i] = r
	}
	soloWall := time.Since(start)
	batched := make([]completion, n)
	var wg sync.WaitGroup
	start = time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := complete(ts.URL, gpuPrompt(i), maxTokens)
			if err != nil {
				t.Error(err)
			}
			batched[i] = r
		}()
	}
	wg.Wait()
	batchWall := time.Since(start)
	differ, tokens := 0, 0
	for i := range n {
		tokens += solo[i].tokens
		if solo[i].text != batched[i].text {
			differ++
			if differ <= 3 {
				t.Logf("prompt %d alone: %q\nbatched: %q", i, solo[i].text, batched[i].text)
			}
		}
	}
	gpuReport("invariance differing=%d of=%d tokens=%d solo-wall=%.1fs batched-wall=%.1fs", differ, n, tokens, soloWall.Seconds(), batchWall.Seconds())
	if differ > 0 && deterministic {
		t.Errorf("%d of %d batched greedy outputs differ from the same prompt alone", differ, n)
	}
}

// TestGPULogitsCost: what reading every sequence's logits costs a decode
// step of 128 sequences: steps asking logits of all 128 (the D2H copy of
// 128 full rows, plus the output projection of 127 more rows) against
// steps asking logits of one, and the host's greedy pass over the 128
// rows.
func TestGPULogitsCost(t *testing.T) {
	c := gpuCheckConfig(t)
	e, err := llamacpp.Open(llamacpp.Config{ModelPath: c.Models[0], GPULayers: -1, Slots: gpuSlots, CtxPerSlot: 512, StepTokens: gpuSlots,
		Threads: c.Threads, FlashAttention: "auto", Deterministic: c.Deterministic}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var b batching.Batch
	pos := int32(0)
	step := func(all bool) time.Duration {
		b.Reset()
		for s := range int32(gpuSlots) {
			b.Add(1+s%100, pos, s, all || s == 0)
		}
		pos++
		start := time.Now()
		if err := e.Decode(&b); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Logits(0); err != nil { // waits for the step
			t.Fatal(err)
		}
		return time.Since(start)
	}
	for range 4 {
		step(true)
		step(false)
	}
	const n = 40
	var tAll, tOne, tRead time.Duration
	for range n {
		tAll += step(true)
		start := time.Now()
		for i := range gpuSlots {
			row, _ := e.Logits(i)
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			_ = best
		}
		tRead += time.Since(start)
		tOne += step(false)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
	gpuReport("logits step-all-128=%.3fms step-one=%.3fms difference=%.3fms host-scalar-argmax-128-rows=%.3fms vocab=%d",
		ms(tAll), ms(tOne), ms(tAll-tOne), ms(tRead), e.Size())
}
