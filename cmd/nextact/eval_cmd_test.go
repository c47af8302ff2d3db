package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nextact/nextact/eval"
)

// Bad flags are exit 2 with a message naming the flag, before anything
// is read or sent; environment variables set flags.
func TestEvalFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{}, "data is required"},
		{[]string{"--data", "x.jsonl", "--mode", "grpc"}, `mode "grpc"`},
		{[]string{"--data", "x.jsonl", "--mode", "openai", "--format", "finetuned"}, "prompted format"},
		{[]string{"--data", "x.jsonl", "--json-schema"}, "json-schema applies to openai"},
		{[]string{"--data", "x.jsonl", "--limit", "3", "--sample", "3"}, "exclude each other"},
		{[]string{"--data", "x.jsonl", "--ctx", "512", "--max-tokens", "512"}, "ctx must be over max-tokens"},
		{[]string{"--data", "x.jsonl", "--bytes-per-token", "0.5"}, "bytes-per-token"},
		{[]string{"--data", "x.jsonl", "--url", "ftp://host"}, "want http(s)://host"},
		{[]string{"--data", "x.jsonl", "--compare", "localhost:9"}, "compare"},
		{[]string{"--data", "x.jsonl", "--max-page-bytes", "10"}, "max-page-bytes"},
		{[]string{"--data", "x.jsonl", "--split", "dev"}, "split"},
		{[]string{"--data", "x.jsonl", "extra"}, "unexpected arguments"},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"eval"}, tc.args...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
	if code := run([]string{"eval", "--data", filepath.Join(t.TempDir(), "missing.jsonl")}, &bytes.Buffer{}, &bytes.Buffer{}); code != 1 {
		t.Errorf("missing data: exit %d, want 1", code)
	}
}

func TestEvalFlagsFromEnv(t *testing.T) {
	t.Setenv("NEXTACT_EVAL_CTX", "8192")
	t.Setenv("NEXTACT_EVAL_COMPARE", "http://127.0.0.1:9")
	cfg, err := parseEval([]string{"--data", "d.jsonl", "--compare-format", "finetuned"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Budget.Ctx != 8192 || cfg.Compare.URL != "http://127.0.0.1:9" || cfg.Compare.Format != "finetuned" || cfg.Compare.Mode != eval.ModeActions {
		t.Errorf("config %+v", cfg)
	}
}

func TestGenEvalData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"gen-eval-data", "--out", dir, "--sessions", "3"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, p := range []string{filepath.Join(dir, "sessions.jsonl"), filepath.Join(dir, "opera")} {
		d, err := eval.Load(p, "")
		if err != nil || len(d.Sessions) != 3 {
			t.Errorf("%s: %v", p, err)
		}
	}
	if code := run([]string{"gen-eval-data", "--sessions", "0"}, &stdout, &stderr); code != 2 {
		t.Errorf("--sessions 0: exit %d", code)
	}
}
