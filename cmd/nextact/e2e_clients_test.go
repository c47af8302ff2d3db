package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The official OpenAI Node SDK (clients/, installed by make npm-deps)
// against a real nextact: chat.completions.parse with nested, optional and
// nullable Zod schemas, a streamed structured output, a list of prompts,
// and an unhonoured parameter refused. Skipped when node or the packages
// are missing (make test installs them).
func TestOpenAINodeSDK(t *testing.T) {
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
	ts := startServer(t, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "structured.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NEXTACT_URL="+ts.URL, "NEXTACT_MODEL="+ts.modelID())
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("node structured.mjs: %v", err)
	}
	passed := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "ok ") {
			passed++
		}
	}
	if passed != 10 {
		t.Fatalf("%d checks passed, want 10", passed)
	}
}
