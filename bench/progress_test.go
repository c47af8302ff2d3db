package bench_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nextact/nextact/bench"
)

func TestProgressLine(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	p := bench.NewProgress("a", 3, t0)
	b := &fakeBackend{answer: func(_ context.Context, in bench.StepInput) bench.StepResult {
		if in.Session == 2 {
			return result(bench.OutcomeRejected, "http_429", 429, nil)
		}
		r := result(bench.OutcomeSuccess, "", 200, firstProduct(in.Page))
		return r
	}}
	bench.Run(context.Background(), spec(3, 2), b, bench.NewStore(1, 1000), time.Now, p)
	got := p.Line(t0.Add(2 * time.Second))
	want := "[a]    2.0s  sessions 3/3 (0 running)  steps 5: 4 ok, 1 rejected, 0 failed  2.00 steps/s  e2e p50 0ms"
	if got != want {
		t.Errorf("Line =\n%q, want\n%q", got, want)
	}
}

// Progress is plain lines when the output is not a terminal, and one line
// rewritten in place on a terminal.
func TestProgressOutput(t *testing.T) {
	t.Parallel()
	for _, terminal := range []bool{false, true} {
		f := newFake(t, func(w http.ResponseWriter, r *http.Request, body map[string]any) {
			time.Sleep(30 * time.Millisecond)
			answer(w, body)
		})
		var out bytes.Buffer
		deps := bench.Deps{Out: &out, Terminal: terminal, ProgressEvery: 10 * time.Millisecond}
		if _, err := bench.Bench(context.Background(), benchConfig(f.URL, bench.ModeActions, 2, 3), deps); err != nil {
			t.Fatal(err)
		}
		s := out.String()
		if n := strings.Count(s, "[a] "); n < 3 {
			t.Errorf("terminal=%v: %d progress updates in:\n%s", terminal, n, s)
		}
		if got := strings.Contains(s, "\r\033[K"); got != terminal {
			t.Errorf("terminal=%v: in-place rewrite is %v:\n%q", terminal, got, s)
		}
		if !strings.Contains(s, "steps     6 issued: 6 success") {
			t.Errorf("terminal=%v: no summary table:\n%s", terminal, s)
		}
	}
}
