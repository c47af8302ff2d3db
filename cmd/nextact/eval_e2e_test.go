package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nextact/nextact/eval"
)

// `nextact eval` against an in-process nextact on the embedded model: the
// Parquet data through /v1/actions/next in the prompted format, the JSONL
// data in the fine-tuned format, and the OpenAI chat API with
// response_format json_schema. Every case is answered (nothing over the
// context: the budget is the server's own --ctx, pages are reduced to fit),
// constrained answers always parse and name an element of the page, and
// the reports are written.
func TestEvalEndToEnd(t *testing.T) {
	c := testConfig()
	c.Slots, c.Ctx, c.MaxPageBytes = 4, 4096, 6000
	ts := startServer(t, c)
	dir := t.TempDir()
	f := eval.GenerateFixture(eval.FixtureOptions{Sessions: 3, MaxSteps: 4, PageBytes: 2500, LongPageEvery: 3, LongPageBytes: 20000, Seed: 5})
	jsonl, parquet, err := f.WriteFiles(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"--url", ts.URL, "--ctx", "4096", "--max-tokens", "96", "--max-page-bytes", "6000", "--concurrency", "4", "--bootstrap", "100"}
	runs := []struct {
		name        string
		args        []string
		constrained bool
	}{
		{"prompted parquet", []string{"--data", parquet, "--format", "prompted"}, true},
		{"finetuned jsonl", []string{"--data", jsonl, "--format", "finetuned"}, true},
		{"openai json schema", []string{"--data", jsonl, "--mode", "openai", "--json-schema"}, false},
	}
	var cases int
	for _, r := range runs {
		out := filepath.Join(dir, strings.ReplaceAll(r.name, " ", "-"))
		var stdout, stderr bytes.Buffer
		args := append(append([]string{"eval", "--out", out}, r.args...), common...)
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", r.name, code, stdout.String(), stderr.String())
		}
		raw, err := os.ReadFile(filepath.Join(out, "report.json"))
		if err != nil {
			t.Fatal(err)
		}
		var rep eval.Report
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatal(err)
		}
		m := rep.Runs[0].Metrics
		if m.Cases == 0 || m.Answers.Answered != m.Cases || m.Answers.Failed != 0 || m.Answers.NotSent != 0 {
			t.Errorf("%s: answers %+v of %d cases", r.name, m.Answers, m.Cases)
		}
		if r.constrained && (m.Answers.Unparsed != 0 || m.Answers.Invalid != 0) {
			t.Errorf("%s: a constrained answer did not parse or was invalid: %+v", r.name, m.Answers)
		}
		if m.Accuracy.Value == nil || *m.Accuracy.Value < 0 || *m.Accuracy.Value > 1 || m.Outcome.Sessions != 3 {
			t.Errorf("%s: metrics %+v", r.name, m)
		}
		if rep.Reductions.CurrentPageReduced+rep.Reductions.HistoryPagesReduced == 0 {
			t.Errorf("%s: long pages were not reduced: %+v", r.name, rep.Reductions)
		}
		if cases != 0 && m.Cases != cases {
			t.Errorf("%s: %d cases, the other formats had %d", r.name, m.Cases, cases)
		}
		cases = m.Cases
		if !strings.Contains(stdout.String(), "accuracy (per session") {
			t.Errorf("%s: summary:\n%s", r.name, stdout.String())
		}
	}
}

// Pages of text the embedded model's tokenizer has no merges for (one
// token per byte, the worst case) fill the budget without a request over
// the server's context with the default --bytes-per-token 1; with 3, the
// requests over the context fail, are counted and make the exit status 1.
func TestEvalWorstCaseTokens(t *testing.T) {
	c := testConfig()
	c.Slots, c.Ctx, c.MaxPageBytes = 4, 4096, 64<<10
	ts := startServer(t, c)
	text := strings.Repeat("漢字検索結果", 2000) // 36 KB without a merge
	var lines []string
	for s := range 2 {
		for step := 1; step <= 3; step++ {
			page := fmt.Sprintf(`<div name="item"><a name="item.view_product">View</a><button name="buy_now">Buy</button><p>%s</p></div>`, text)
			a := `{"type":"click","name":"item.view_product"}`
			if step == 3 {
				a = `{"type":"terminate"}`
			}
			b, _ := json.Marshal(page)
			lines = append(lines, fmt.Sprintf(`{"session":"w%d","step":%d,"page":%s,"action":%s}`, s, step, b, a))
		}
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "worst.jsonl")
	if err := os.WriteFile(data, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		bpt  string
		code int
	}{{"1", 0}, {"3", 1}} {
		out := filepath.Join(dir, "out"+tc.bpt)
		var stdout, stderr bytes.Buffer
		code := run([]string{"eval", "--data", data, "--url", ts.URL, "--ctx", "4096", "--max-tokens", "64", "--bytes-per-token", tc.bpt, "--bootstrap", "0", "--out", out}, &stdout, &stderr)
		if code != tc.code {
			t.Fatalf("--bytes-per-token %s: exit %d, want %d\n%s\n%s", tc.bpt, code, tc.code, stdout.String(), stderr.String())
		}
		raw, err := os.ReadFile(filepath.Join(out, "report.json"))
		if err != nil {
			t.Fatal(err)
		}
		var rep eval.Report
		if err := json.Unmarshal(raw, &rep); err != nil {
			t.Fatal(err)
		}
		a := rep.Runs[0].Metrics.Answers
		t.Logf("--bytes-per-token %s: %+v, %d prompt tokens", tc.bpt, a, rep.Runs[0].Run.PromptTokens)
		switch {
		case tc.code == 0 && (a.Answered != 4 || rep.Runs[0].Run.PromptTokens < 4*2500):
			t.Errorf("bpt 1: answers %+v, %d prompt tokens (want full prompts near the context)", a, rep.Runs[0].Run.PromptTokens)
		case tc.code == 1 && a.Failed == 0:
			t.Errorf("bpt 3: no request over the context: %+v", a)
		}
		if tc.code == 1 {
			results, _ := os.ReadFile(filepath.Join(out, "results-a.jsonl"))
			if !strings.Contains(string(results), "context") {
				t.Errorf("the failures do not say why:\n%s", results)
			}
		}
	}
}
