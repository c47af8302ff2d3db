package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Real client libraries (clients/, installed by make npm-deps) against a
// real nextact: the official OpenAI Node SDK (chat.completions.parse with
// nested, optional and nullable Zod schemas, a streamed structured output,
// a list of prompts, a parameter out of range refused; models.retrieve,
// n = 3, penalties and logit_bias; logprobs: chat's whole and streamed,
// completions' echo with max_tokens 0) and LangChain JS
// (withStructuredOutput, invoke and stream), and tool calls through both
// (clients/tools.mjs). Skipped when node or the
// packages are missing (make test installs them).
func TestNodeClients(t *testing.T) {
	dir, err := filepath.Abs("../../clients")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (make npm-deps installs it)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		t.Skip("clients/node_modules is missing: run make npm-deps")
	}
	c := testConfig()
	c.Ctx = 4096 // tools.mjs: tool definitions make long prompts
	ts := startServer(t, c)
	for _, c := range []struct {
		script string
		checks int
	}{{"structured.mjs", 9}, {"langchain.mjs", 4}, {"sampling.mjs", 7}, {"logprobs.mjs", 4}, {"tools.mjs", 10}} {
		t.Run(c.script, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, c.script)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "NEXTACT_URL="+ts.URL, "NEXTACT_MODEL="+ts.modelID())
			var stderr bytes.Buffer
			cmd.Stderr = &stderr // the SDK's warnings
			out, err := cmd.Output()
			t.Logf("%s\nstderr: %s", out, stderr.Bytes())
			if err != nil {
				t.Fatalf("node %s: %v", c.script, err)
			}
			passed := 0
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "ok ") {
					passed++
				}
			}
			if passed != c.checks {
				t.Fatalf("%d checks passed, want %d", passed, c.checks)
			}
		})
	}
}
