package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nextact/nextact/bench"
)

// runBenchCmd runs `nextact bench` with args against url and returns its
// exit code, output and report (nil when none was written).
func runBenchCmd(t *testing.T, url string, args ...string) (int, string, *bench.Report) {
	t.Helper()
	dir := t.TempDir()
	args = append([]string{"bench", "--url", url, "--out", dir, "--duration", "2m", "--page-tokens", "50"}, args...)
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	out := stdout.String() + stderr.String()
	raw, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		return code, out, nil
	}
	var rep bench.Report
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "report.html")); err != nil {
		t.Errorf("no report.html: %v", err)
	}
	return code, out, &rep
}

// checkAccounting asserts that every step has one outcome and that the
// sessions' steps add up to the steps issued.
func checkAccounting(t *testing.T, rr bench.RunReport) {
	t.Helper()
	s := rr.Steps
	if s.Success+s.Rejected+s.Failed != s.Issued || len(rr.Samples) != s.Issued {
		t.Fatalf("steps do not add up: %+v, %d samples", s, len(rr.Samples))
	}
	perSession := map[int]int{}
	for _, x := range rr.Samples {
		perSession[x.Session]++
	}
	if len(perSession) != rr.Sessions.Started {
		t.Errorf("%d sessions sent steps, %d started", len(perSession), rr.Sessions.Started)
	}
}

// A small run of each mode against the real engine on the embedded model:
// 4 shoppers × 3 steps over /v1/actions/next, 2 × 2 over nextact's own
// /v1/chat/completions, and the sessions mode.
func TestBenchCommand(t *testing.T) {
	c := testConfig()
	c.Ctx = 3072 // step 3 of a session holds about 2,200 tokens
	ts := startServer(t, c)

	t.Run("actions", func(t *testing.T) {
		code, out, rep := runBenchCmd(t, ts.URL, "--sessions", "4", "--steps", "3")
		if code != 0 || rep == nil {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		rr := rep.Runs[0]
		checkAccounting(t, rr)
		if rr.Steps.Failed != 0 || rr.Steps.Rejected != 0 || rr.Steps.Unparsed != 0 || rr.Steps.Issued < 4 {
			t.Errorf("steps = %+v\n%s", rr.Steps, out)
		}
		if rr.Sessions.Finished != 4 || rr.Model != ts.modelID() || rr.LatencyMs.E2E == nil || rr.LatencyMs.TTFT == nil {
			t.Errorf("sessions %+v, model %q, latency %+v", rr.Sessions, rr.Model, rr.LatencyMs)
		}
		if rr.Tokens.Prompt < 300*rr.Steps.Success || rr.Tokens.Completion == 0 {
			t.Errorf("tokens = %+v", rr.Tokens)
		}
		if !strings.Contains(out, "latency ms") || !strings.Contains(out, "report.html") {
			t.Errorf("no table in the output:\n%s", out)
		}
	})

	t.Run("openai", func(t *testing.T) {
		code, out, rep := runBenchCmd(t, ts.URL, "--mode", "openai", "--sessions", "2", "--steps", "2", "--max-tokens", "16")
		if code != 0 || rep == nil {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		rr := rep.Runs[0]
		checkAccounting(t, rr)
		// The random-weight model seldom writes the prompted JSON: unparsed
		// answers are successes with fallback actions.
		if rr.Steps.Success != rr.Steps.Issued || rr.Steps.Issued < 2 || rr.TTFTSource != bench.SourceClientStream {
			t.Errorf("steps = %+v (%s)\n%s", rr.Steps, rr.TTFTSource, out)
		}
		if rr.LatencyMs.TTFT == nil || rr.LatencyMs.TTFT.Min <= 0 || rr.Tokens.StepsWithUsage != rr.Steps.Success || rr.Tokens.Completion == 0 {
			t.Errorf("ttft %+v, tokens %+v", rr.LatencyMs.TTFT, rr.Tokens)
		}
	})

	t.Run("sessions", func(t *testing.T) {
		code, out, rep := runBenchCmd(t, ts.URL, "--mode", "sessions", "--sessions", "3", "--steps", "2")
		if rep == nil {
			t.Fatalf("no report (exit %d):\n%s", code, out)
		}
		rr := rep.Runs[0]
		checkAccounting(t, rr)
		if code != 0 || rr.Steps.Issued == 0 || rr.Steps.Success != rr.Steps.Issued {
			t.Errorf("exit %d, steps = %+v\n%s", code, rr.Steps, out)
		}
	})
}

func TestBenchFlags(t *testing.T) {
	var stderr bytes.Buffer
	for _, args := range [][]string{
		{"--mode", "grpc"}, {"--arrival", "storm"}, {"--sessions", "0"}, {"--url", "localhost:8080"}, {"extra"},
		{"--mode", "openai", "--format", "finetuned"},
	} {
		if code := run(append([]string{"bench"}, args...), &stderr, &stderr); code != 2 {
			t.Errorf("bench %v: exit %d, want 2", args, code)
		}
	}
	t.Setenv("NEXTACT_BENCH_SESSIONS", "7")
	t.Setenv("NEXTACT_MODEL", "/models/not-a-model-id.gguf") // serve's, not bench's
	c, err := parseBench([]string{"--steps", "2", "--arrival", "poisson:3", "--slo-step", "2s", "--compare", "http://127.0.0.1:9"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sessions != 7 || c.Steps != 2 || c.Target.Model != "" || c.Arrival.Rate != 3 || c.SLO.Step != 2*time.Second ||
		c.Compare.Mode != bench.ModeActions || c.Target.URL != "http://127.0.0.1:8080" || c.PageTokens != 150 {
		t.Errorf("config = %+v", c)
	}
	var stdout bytes.Buffer
	if code := run([]string{"help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "bench") {
		t.Errorf("usage does not list bench:\n%s", stdout.String())
	}
}
