package eval_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/nextact/nextact/eval"
)

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// instantServer answers every request at once with a fixed body, after
// reading the request: a target that costs the harness nothing.
func instantServer(b *testing.B, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/models" {
			_, _ = io.WriteString(w, `{"data":[{"id":"m"}]}`)
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkHarness measures the harness itself: cases per second of a
// whole `nextact eval` (load the JSONL, prepare every request, send it,
// record the result, score, bootstrap 1,000 resamples, write the reports)
// against a server that answers at once, for both target APIs; and with
// pages of OPeRA's size (every page padded to 150 KB, reduced to a 32k
// context).
//
//	go test -run '^$' -bench Harness -benchtime 5x ./eval
func BenchmarkHarness(b *testing.B) {
	targets := []struct {
		name, mode, body string
		long             bool
	}{
		{"actions", eval.ModeActions, actionsBody, false},
		{"openai", eval.ModeOpenAI, openaiBody, false},
		{"actions-150KB-pages", eval.ModeActions, actionsBody, true},
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			o := eval.FixtureOptions{Sessions: 300, Seed: 1}
			if tg.long {
				o = eval.FixtureOptions{Sessions: 30, Seed: 1, LongPageEvery: 1, LongPageBytes: 150 << 10}
			}
			_, data, _ := writeFixture(b, o)
			ds, err := eval.Load(data, "")
			if err != nil {
				b.Fatal(err)
			}
			cases := len(ds.Cases())
			srv := instantServer(b, tg.body)
			cfg := config(data, srv.URL, b.TempDir())
			cfg.Target.Mode, cfg.Bootstrap, cfg.Run.Concurrency, cfg.Restart = tg.mode, 1000, 16, true
			if tg.long {
				cfg.Budget.Ctx, cfg.Budget.BytesPerToken = 32768, 3
			}
			var elapsed, cpu time.Duration
			for b.Loop() {
				start, cpu0 := time.Now(), cpuTime()
				rep, err := eval.Run(context.Background(), cfg, eval.Deps{})
				elapsed += time.Since(start)
				cpu += cpuTime() - cpu0
				if err != nil || rep.Runs[0].Metrics.Answers.Answered != cases {
					b.Fatalf("%v %+v", err, rep.Runs[0].Metrics.Answers)
				}
			}
			b.ReportMetric(float64(cases*b.N)/elapsed.Seconds(), "cases/s")
			// CPU time per case (harness and fake server together) does not
			// depend on what else runs on the machine.
			b.ReportMetric(float64(cpu.Microseconds())/float64(cases*b.N), "cpu-µs/case")
			b.ReportMetric(float64(cases), "cases")
		})
	}
}

const (
	actionsBody = `{"action":{"type":"terminate"},"rationale":"done","usage":{"prompt_tokens":900,"completion_tokens":12,"total_tokens":912},"timing":{"total_ms":1,"first_token_ms":1}}`
	openaiBody  = `{"choices":[{"index":0,"message":{"role":"assistant","content":"{\"rationale\":\"done\",\"action\":{\"type\":\"terminate\"}}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":900,"completion_tokens":12}}`
)
