package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/server"
)

// API keys from the environment, flags (repeated or comma-separated; flags
// replace the environment's) and a key file.
func TestAPIKeySources(t *testing.T) {
	t.Setenv("NEXTACT_API_KEY", "env-1, env-2")
	c, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.APIKeys.values, ","); got != "env-1,env-2" {
		t.Errorf("from env: %s", got)
	}
	c, err = parseServe([]string{"--api-key", "a,b", "--api-key", "c"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.APIKeys.values, ","); got != "a,b,c" {
		t.Errorf("flags over env: %s", got)
	}
	if strings.Contains(c.APIKeys.String(), "a,b") || c.APIKeys.String() != "3 values" {
		t.Errorf("the flag prints its keys: %s", c.APIKeys.String())
	}

	file := filepath.Join(t.TempDir(), "keys")
	content := "# evaluation harness\nsk-eval name=eval priority=high rate=-1\n\nsk-load name=load priority=low rate=50 burst=100\nsk-plain\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	c.APIKeyFile = file
	keys, err := c.apiKeys()
	if err != nil {
		t.Fatal(err)
	}
	want := []server.APIKey{
		{Key: "a"}, {Key: "b"}, {Key: "c"},
		{Key: "sk-eval", Name: "eval", Priority: admission.PriorityHigh, RateLimit: -1},
		{Key: "sk-load", Name: "load", Priority: admission.PriorityLow, RateLimit: 50, RateBurst: 100},
		{Key: "sk-plain"},
	}
	if len(keys) != len(want) {
		t.Fatalf("keys %+v", keys)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Errorf("key %d: %+v, want %+v", i, keys[i], want[i])
		}
	}
	for _, bad := range []string{"k priority=urgent", "k rate=fast", "k burst=-1", "k colour=red", "k name"} {
		if err := os.WriteFile(file, []byte(bad+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := c.apiKeys(); err == nil || !strings.Contains(err.Error(), ":1:") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	c.APIKeyFile = filepath.Join(t.TempDir(), "missing")
	if _, err := c.apiKeys(); err == nil {
		t.Error("missing key file accepted")
	}
}

func TestOpsFlags(t *testing.T) {
	c, err := parseServe([]string{"--max-queue-wait", "0", "--kv-overcommit", "2", "--gpu-memory-high-water", "0.9",
		"--short-request-tokens", "256", "--gpu-stale-after", "3s", "--gpu-ignore-throttle", "--max-retry-after", "30s",
		"--rate-limit", "5", "--rate-burst", "10", "--header-limit", "4096", "--gpu-sample-interval", "250ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := admission.Config{MaxQueueWait: -1, KVOvercommit: 2, GPUMemoryHighWater: 0.9, ShortRequestTokens: 256,
		StaleAfter: 3 * time.Second, IgnoreThrottle: true, MaxRetryAfter: 30 * time.Second}
	if got := c.admission(); got != want {
		t.Errorf("admission %+v, want %+v", got, want)
	}
	if c.RateLimit != 5 || c.RateBurst != 10 || c.HeaderLimit != 4096 || c.GPUSampleInterval != 250*time.Millisecond {
		t.Errorf("config %+v", c)
	}
	d, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.admission(); got.MaxQueueWait != admission.DefaultMaxQueueWait || got.KVOvercommit != admission.DefaultKVOvercommit {
		t.Errorf("defaults %+v", got)
	}
	for _, args := range [][]string{
		{"--kv-overcommit", "0.5"}, {"--gpu-memory-high-water", "1.5"}, {"--rate-limit", "-1"},
		{"--header-limit", "100"}, {"--max-retry-after", "0s"}, {"--gpu-stale-after", "0s"}, {"--max-queue-wait", "-1s"},
	} {
		if _, err := parseServe(args, io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
