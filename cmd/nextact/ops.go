package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/server"
)

// addOpsFlags declares the flags of access control, admission and GPU
// telemetry.
func addOpsFlags(fs *flag.FlagSet, c *serveConfig) {
	fs.Var(&c.APIKeys, "api-key", "API key required on /v1/* (repeatable, or comma-separated); none: no keys")
	fs.StringVar(&c.APIKeyFile, "api-key-file", "", "file of API keys, one per line: KEY [name=N] [priority=low|normal|high] [rate=R] [burst=B]")
	fs.Float64Var(&c.RateLimit, "rate-limit", 0, "generation requests per second per API key (per client address without keys); 0: no limit")
	fs.IntVar(&c.RateBurst, "rate-burst", 0, "requests a client may send at once within its rate (0: the rate rounded up)")
	fs.IntVar(&c.HeaderLimit, "header-limit", server.DefaultHeaderLimit, "largest request header block in bytes (431 above)")
	fs.DurationVar(&c.MaxQueueWait, "max-queue-wait", admission.DefaultMaxQueueWait, "longest a request waits for a slot before a 503 (0: no bound)")
	fs.Float64Var(&c.KVOvercommit, "kv-overcommit", admission.DefaultKVOvercommit, "tokens reserved by running and waiting requests (prompt + max_tokens) may reach this multiple of slots x ctx")
	fs.Float64Var(&c.GPUMemoryHighWater, "gpu-memory-high-water", admission.DefaultGPUMemoryHighWater, "GPU memory fraction above which only short requests are admitted")
	fs.IntVar(&c.ShortRequestTokens, "short-request-tokens", admission.DefaultShortRequestTokens, "prompt + max_tokens at or below which a request is short")
	fs.DurationVar(&c.GPUSampleInterval, "gpu-sample-interval", time.Second, "how often NVML is sampled (0: GPU telemetry off)")
	fs.DurationVar(&c.GPUStaleAfter, "gpu-stale-after", admission.DefaultStaleAfter, "a GPU sample older than this counts as saturated")
	fs.BoolVar(&c.GPUIgnoreThrottle, "gpu-ignore-throttle", false, "admit as if no GPU were throttled")
	fs.DurationVar(&c.MaxRetryAfter, "max-retry-after", admission.DefaultMaxRetryAfter, "cap of the Retry-After of 503s")
}

func (c serveConfig) validateOps() error {
	switch {
	case c.RateLimit < 0 || c.RateBurst < 0:
		return fmt.Errorf("--rate-limit and --rate-burst must not be negative, got %g and %d", c.RateLimit, c.RateBurst)
	case c.HeaderLimit < 1024:
		return fmt.Errorf("--header-limit must be at least 1024, got %d", c.HeaderLimit)
	case c.MaxQueueWait < 0:
		return fmt.Errorf("--max-queue-wait must not be negative, got %s", c.MaxQueueWait)
	case c.KVOvercommit < 1:
		return fmt.Errorf("--kv-overcommit must be at least 1, got %g", c.KVOvercommit)
	case c.GPUMemoryHighWater <= 0 || c.GPUMemoryHighWater > 1:
		return fmt.Errorf("--gpu-memory-high-water must be in (0, 1], got %g", c.GPUMemoryHighWater)
	case c.ShortRequestTokens < 0:
		return fmt.Errorf("--short-request-tokens must not be negative, got %d", c.ShortRequestTokens)
	case c.GPUSampleInterval < 0:
		return fmt.Errorf("--gpu-sample-interval must not be negative, got %s", c.GPUSampleInterval)
	case c.GPUStaleAfter <= 0:
		return fmt.Errorf("--gpu-stale-after must be positive, got %s", c.GPUStaleAfter)
	case c.MaxRetryAfter < time.Second:
		return fmt.Errorf("--max-retry-after must be at least 1s, got %s", c.MaxRetryAfter)
	}
	return nil
}

// admission is the scheduler's admission config from the flags.
func (c serveConfig) admission() admission.Config {
	wait := c.MaxQueueWait
	if wait == 0 {
		wait = -1 // no bound
	}
	return admission.Config{
		MaxQueueWait: wait, KVOvercommit: c.KVOvercommit, GPUMemoryHighWater: c.GPUMemoryHighWater,
		ShortRequestTokens: c.ShortRequestTokens, StaleAfter: c.GPUStaleAfter, IgnoreThrottle: c.GPUIgnoreThrottle,
		MaxRetryAfter: c.MaxRetryAfter,
	}
}

// listFlag is a repeatable flag whose values may also be comma-separated.
// Values set from the environment are replaced by the first value given on
// the command line.
type listFlag struct {
	values  []string
	fromEnv bool
}

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return fmt.Sprintf("%d values", len(l.values)) // never print keys
}

func (l *listFlag) Set(v string) error {
	if l.fromEnv {
		l.values, l.fromEnv = nil, false
	}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			l.values = append(l.values, s)
		}
	}
	return nil
}

// apiKeys gathers the keys of --api-key (normal priority, the global rate
// limit) and --api-key-file.
func (c serveConfig) apiKeys() ([]server.APIKey, error) {
	var keys []server.APIKey
	for _, k := range c.APIKeys.values {
		keys = append(keys, server.APIKey{Key: k})
	}
	if c.APIKeyFile == "" {
		return keys, nil
	}
	f, err := os.Open(c.APIKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--api-key-file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := parseKeyLine(line)
		if err != nil {
			return nil, fmt.Errorf("--api-key-file %s:%d: %w", c.APIKeyFile, n, err)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--api-key-file: %w", err)
	}
	return keys, nil
}

// parseKeyLine reads "KEY [name=N] [priority=P] [rate=R] [burst=B]".
func parseKeyLine(line string) (server.APIKey, error) {
	fields := strings.Fields(line)
	k := server.APIKey{Key: fields[0]}
	for _, f := range fields[1:] {
		name, v, ok := strings.Cut(f, "=")
		var err error
		switch {
		case !ok:
			err = fmt.Errorf("%q is not name=value", f)
		case name == "name":
			k.Name = v
		case name == "priority":
			k.Priority, err = admission.ParsePriority(v)
		case name == "rate":
			k.RateLimit, err = strconv.ParseFloat(v, 64)
		case name == "burst":
			k.RateBurst, err = strconv.Atoi(v)
			if err == nil && k.RateBurst < 0 {
				err = fmt.Errorf("burst %d is negative", k.RateBurst)
			}
		default:
			err = fmt.Errorf("unknown field %q (want name, priority, rate or burst)", name)
		}
		if err != nil {
			return k, err
		}
	}
	return k, nil
}
