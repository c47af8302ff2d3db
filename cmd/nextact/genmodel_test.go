package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nextact/nextact/models"
)

func TestGenModelWritesTheSpec(t *testing.T) {
	out := filepath.Join(t.TempDir(), "m.gguf")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"gen-model", "--out", out, "--embd", "128", "--layers", "2", "--heads", "2", "--kv-heads", "1", "--ffn", "256", "--name", "gen-test"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	info, err := models.Inspect(out)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "gen-test" || info.EmbeddingLength != 128 || info.BlockCount != 2 {
		t.Fatalf("inspect: %+v", info)
	}
	if code := run([]string{"gen-model", "--out", out, "--embd", "100"}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "32") {
		t.Fatalf("a bad spec was accepted: %d %s", code, stderr.String())
	}
}
