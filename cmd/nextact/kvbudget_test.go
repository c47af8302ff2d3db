package main

import (
	"io"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/nextact/nextact/models"
)

func TestByteSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1500", 1500}, {"3GiB", 3 << 30}, {"512 MiB", 512 << 20}, {"1.5g", 3 << 29},
		{"2kb", 2000}, {"4KiB", 4096}, {"1TB", 1e12}, {"7b", 7},
	}
	for _, tt := range tests {
		var b byteSize
		if err := b.Set(tt.in); err != nil || int64(b) != tt.want {
			t.Errorf("Set(%q) = %d, %v; want %d", tt.in, b, err, tt.want)
		}
	}
	for _, bad := range []string{"", "GiB", "-1GiB", "3 apples", "1e30"} {
		var b byteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted as %d", bad, b)
		}
	}
}

func TestCheckKVBudget(t *testing.T) {
	t.Parallel()
	// 8 slots x 4096 tokens x 8 KiB = 256 MiB.
	const perToken = 8 << 10
	for _, ok := range []byteSize{0, 256 << 20, 1 << 30} {
		if err := checkKVBudget(8, 4096, perToken, ok); err != nil {
			t.Errorf("budget %d: %v", ok, err)
		}
	}
	err := checkKVBudget(8, 4096, perToken, 128<<20)
	if err == nil {
		t.Fatal("256 MiB of KV accepted under a 128 MiB budget")
	}
	for _, want := range []string{"256.0 MiB", "128.0 MiB", "--ctx to at most 2048", "--slots to at most 4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if err := checkKVBudget(8, 4096, 0, 1); err != nil {
		t.Errorf("unknown bytes per token: %v", err)
	}
}

// TestKVBudgetRefusesStart checks the budget against the real model's
// metadata before anything is loaded.
func TestKVBudgetRefusesStart(t *testing.T) {
	path := testModelPath(t)
	info, err := models.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	per := info.KVBytesPerToken()
	if per <= 0 {
		t.Fatalf("KV bytes per token of the embedded model = %d", per)
	}
	c, err := parseServe([]string{"--model", path, "--slots", "4", "--ctx", "1024",
		"--kv-budget", strconv.FormatInt(4*1024*per-1, 10)}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := build(c, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "--kv-budget") {
		t.Fatalf("build over budget: %v", err)
	}
}
