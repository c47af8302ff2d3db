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

// --tokenizer-json takes the vocabulary, pre-tokenizer and chat template
// of a tokenizer.json and the tokenizer_config.json beside it (a Qwen2-style
// one here; the real Llama-3 tokenizer is tested on the engine in
// runtime/llamacpp).
func TestGenModelTokenizerJSON(t *testing.T) {
	out := filepath.Join(t.TempDir(), "m.gguf")
	var stdout, stderr bytes.Buffer
	args := []string{"gen-model", "--out", out, "--embd", "64", "--layers", "1", "--heads", "2", "--kv-heads", "1", "--ffn", "64",
		"--tokenizer-json", filepath.Join("testdata", "tiny-tokenizer", "tokenizer.json")}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "7 tokens") || !strings.Contains(stdout.String(), "pre-tokenizer qwen2") {
		t.Errorf("output: %s", stdout.String())
	}
	info, err := models.Inspect(out)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := models.DetectChatFormat(info.ChatTemplate); info.VocabSize != 7 || f != models.FormatChatML {
		t.Fatalf("vocab %d, format %q (%v)", info.VocabSize, f, err)
	}
	stderr.Reset()
	if code := run([]string{"gen-model", "--out", out, "--tokenizer-pre", "qwen2"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "need --tokenizer-json") {
		t.Errorf("--tokenizer-pre alone: exit %d: %s", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"gen-model", "--out", out, "--tokenizer-json", filepath.Join("testdata", "tiny-tokenizer", "tokenizer_config.json")}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "only byte-level BPE") {
		t.Errorf("a config as tokenizer.json: exit %d: %s", code, stderr.String())
	}
}
