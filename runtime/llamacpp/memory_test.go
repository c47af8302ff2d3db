package llamacpp_test

import (
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// memoryEnv makes the test binary load one model with llama.cpp's info
// log on and exit: "path slots ctx step".
const memoryEnv = "NEXTACT_TEST_MEMORY"

func loadAndLog(arg string) int {
	var path string
	var slots, ctx, step int
	if _, err := fmt.Sscan(arg, &path, &slots, &ctx, &step); err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
		return 2
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	e, err := llamacpp.Open(llamacpp.Config{ModelPath: path, Slots: slots, CtxPerSlot: ctx, StepTokens: step, Threads: 1}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 3
	}
	e.Close()
	return 0
}

var bufferLine = regexp.MustCompile(`(?m)^\S+:\s+(\S+)\s+(model|output|KV|compute) buffer size =\s+([0-9.]+) MiB`)

// llamaBuffers loads a model in a child process and sums the buffers
// llama.cpp reports, in bytes, by kind (model, output, KV, compute).
func llamaBuffers(t *testing.T, path string, slots, ctx, step int) map[string]float64 {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d %d", memoryEnv, path, slots, ctx, step))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, tail(out))
	}
	got := map[string]float64{}
	for _, m := range bufferLine.FindAllStringSubmatch(string(out), -1) {
		mib, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatal(err)
		}
		got[m[2]] += mib * (1 << 20)
	}
	if len(got) != 4 {
		t.Fatalf("buffers %v from llama.cpp's log:\n%s", got, tail(out))
	}
	return got
}

// The memory estimate, known before loading, against what llama.cpp
// allocates (as its log reports it, in hundredths of MiB): weights, KV and
// output buffers exactly, the compute buffer from above. Configurations
// where each compute term dominates: logits (a 31k vocabulary), attention
// (long contexts), and a tiny one where the fixed part weighs most.
func TestMemoryEstimateBoundsLlamaCpp(t *testing.T) {
	bigVocab := filepath.Join(tempRoot, "big-vocab.gguf")
	s := models.DefaultSpec()
	s.Name, s.ExtraTokens = "big-vocab", 30000
	if err := models.Generate(bigVocab, s); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path             string
		slots, ctx, step int
	}{
		{testModel(t), 1, 256, 64},
		{testModel(t), 8, 4096, 512},
		{testModel(t), 2, 8192, 512},
		{testModel(t), 16, 1024, 256},
		{bigVocab, 4, 512, 256},
	}
	const rounding = 0.005 * (1 << 20) // the log's two decimals of MiB
	for _, c := range cases {
		name := fmt.Sprintf("%s/%dx%d/step%d", filepath.Base(c.path), c.slots, c.ctx, c.step)
		t.Run(name, func(t *testing.T) {
			info, err := models.Inspect(c.path)
			if err != nil {
				t.Fatal(err)
			}
			est := info.Estimate(c.slots, c.ctx, c.step, 0)
			got := llamaBuffers(t, c.path, c.slots, c.ctx, c.step)
			exact := map[string]int64{"model": est.Weights, "KV": est.KV, "output": est.Output}
			for kind, want := range exact {
				if math.Abs(got[kind]-float64(want)) > rounding {
					t.Errorf("%s buffer: llama.cpp %.0f bytes, estimate %d", kind, got[kind], want)
				}
			}
			if float64(est.Compute) < got["compute"]-rounding {
				t.Errorf("compute buffer: llama.cpp %.0f bytes, estimate %d is below it", got["compute"], est.Compute)
			}
			t.Logf("compute: estimate %.2f MiB, llama.cpp %.2f MiB (%.2fx); total estimate %.2f MiB",
				float64(est.Compute)/(1<<20), got["compute"]/(1<<20), float64(est.Compute)/got["compute"], float64(est.Total())/(1<<20))
		})
	}
}
