package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models/registry"
)

// pathList is a repeatable flag of paths (no splitting on commas: a
// path may hold one). The environment's value (NEXTACT_MODEL) is one
// path, replaced by any on the command line.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, " ") }

func (p *pathList) Set(v string) error {
	*p = append(*p, v)
	return nil
}

// keepAliveFlag reads a keep_alive as Ollama does ("5m", "300", "-1").
type keepAliveFlag time.Duration

func (k *keepAliveFlag) String() string { return registry.FormatKeepAlive(time.Duration(*k)) }

func (k *keepAliveFlag) Set(v string) error {
	d, err := registry.ParseKeepAliveString(v)
	if err != nil {
		return err
	}
	*k = keepAliveFlag(d)
	return nil
}

// serveConfig is everything `nextact serve` can be told.
type serveConfig struct {
	Addr string
	// Models are --model values (PATH or ID=PATH), repeatable.
	Models           pathList
	ModelID          string
	ModelsFile       string
	ModelsDir        string
	OllamaModels     string
	GPUMemoryBudget  string
	HostMemoryBudget byteSize
	KeepAlive        keepAliveFlag
	ChatFormat       string
	CacheDir         string
	Slots            int
	Ctx              int
	Threads          int
	Queue            int
	StepTokens       int
	GPULayers        int
	FlashAttention   string
	Deterministic    bool
	BodyLimit        int
	RequestTimeout   time.Duration
	DefaultMaxTokens int
	ShutdownTimeout  time.Duration
	LogLevel         string

	NoPrefixCache     bool
	KVBudget          byteSize
	HostKVBudget      byteSize
	SessionTTL        time.Duration
	MaxSessions       int
	SessionStore      string
	SessionLease      time.Duration
	ActionFormat      string
	ActionMaxTokens   int
	MaxPageBytes      int
	MaxRationaleBytes int
	MaxTextBytes      int
	// Bounds on request content (limits.go).
	limitsConfig

	// Access (ops.go).
	APIKeys     listFlag
	APIKeyFile  string
	RateLimit   float64
	RateBurst   int
	HeaderLimit int
	// Admission and GPU telemetry.
	MaxQueueWait       time.Duration
	KVOvercommit       float64
	GPUMemoryHighWater float64
	ShortRequestTokens int
	GPUSampleInterval  time.Duration
	GPUStaleAfter      time.Duration
	GPUIgnoreThrottle  bool
	MaxRetryAfter      time.Duration
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "nextact")
	}
	return filepath.Join(os.TempDir(), "nextact-cache")
}

// parseServe reads flags, with NEXTACT_<FLAG> environment variables as
// defaults (flags win).
func parseServe(args []string, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address")
	fs.Var(&c.Models, "model", "a Llama-family GGUF to serve: PATH, or ID=PATH; repeatable (default: the embedded generated model)")
	fs.StringVar(&c.ModelID, "model-id", "", "model id in the API of the one --model PATH (default: the GGUF's general.name or file name)")
	fs.StringVar(&c.ModelsFile, "models", "", "JSON manifest of models to serve (id, path or ollama name, formats, sampling, slots, ctx, preload, keep_alive)")
	fs.StringVar(&c.ModelsDir, "models-dir", "", "serve every *.gguf file of this folder")
	fs.StringVar(&c.OllamaModels, "ollama-models", "", "Ollama model store to serve the models of (default: $OLLAMA_MODELS, else ~/.ollama/models when it exists; none: no store)")
	fs.StringVar(&c.GPUMemoryBudget, "gpu-memory-budget", "auto", "GPU memory the loaded models may take together, e.g. 20GiB (auto: the free GPU memory at start less a margin; 0: no bound)")
	fs.Var(&c.HostMemoryBudget, "host-memory-budget", "host memory the loaded models may take together, e.g. 16GiB (0: no bound)")
	c.KeepAlive = keepAliveFlag(registry.DefaultKeepAlive)
	fs.Var(&c.KeepAlive, "keep-alive", "how long a model stays loaded once idle, for models that set none (Ollama's forms: 5m, 300, 0 unloads when idle, -1 never); a lone --model and the embedded model never unload")
	fs.StringVar(&c.ChatFormat, "chat-format", "", "chat format: llama3, chatml or mistral (default: detected from the GGUF's template)")
	fs.StringVar(&c.CacheDir, "cache-dir", defaultCacheDir(), "where the embedded default model is written")
	fs.IntVar(&c.Slots, "slots", 8, "sequences decoded together")
	fs.IntVar(&c.Ctx, "ctx", 4096, "context per slot, in tokens (prompt plus completion)")
	fs.IntVar(&c.Threads, "threads", 0, "CPU threads for the engine (0: half the cores, at least 1)")
	fs.IntVar(&c.Queue, "queue", 256, "requests that may wait for a slot; more get 503")
	fs.IntVar(&c.StepTokens, "step-tokens", 0, "token budget of one engine step (decode tokens plus prompt chunks); 0: by device, 512 on CPUs, 2048 with a GPU")
	fs.IntVar(&c.GPULayers, "gpu-layers", -1, "layers offloaded to the GPU (-1: all when a GPU backend is present, else none)")
	fs.StringVar(&c.FlashAttention, "flash-attn", "auto", "flash attention: auto, on or off")
	fs.BoolVar(&c.Deterministic, "deterministic", true, "batch-invariant kernels on a CUDA backend built by make cuda (greedy output independent of the batch; --deterministic=false trades that for speed)")
	fs.IntVar(&c.BodyLimit, "body-limit", 8<<20, "largest request body in bytes (413 above)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 10*time.Minute, "server-side deadline of every request")
	fs.IntVar(&c.DefaultMaxTokens, "default-max-tokens", 1024, "max_tokens when a request gives none (capped by the context left)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 60*time.Second, "how long in-flight requests may take to finish on SIGTERM")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&c.NoPrefixCache, "no-prefix-cache", false, "turn off KV reuse of shared prompt prefixes")
	c.HostKVBudget = 1 << 30
	fs.Var(&c.HostKVBudget, "host-kv-budget", "host memory for the KV of idle slots, saved when a slot is reused and restored at the session's next step instead of a prefill, e.g. 4GiB (0: off)")
	fs.Var(&c.KVBudget, "kv-budget", "most memory the KV cache (slots x ctx tokens) may take, e.g. 3GiB; start fails above it (0: no bound)")
	fs.DurationVar(&c.SessionTTL, "session-ttl", 30*time.Minute, "idle time after which a shopper session and its history are dropped")
	fs.IntVar(&c.MaxSessions, "max-sessions", 10000, "most shopper sessions open at once (503 too_many_sessions above)")
	fs.StringVar(&c.SessionStore, "session-store", "", "where sessions are written through so they survive a restart: a bbolt file path, redis://host:port/db (shared by replicas), or memory (none); default: sessions.db under --cache-dir")
	fs.DurationVar(&c.SessionLease, "session-lease", 30*time.Second, "with a redis:// session store: how long a step's lease on its session lasts unrenewed (a replica that dies mid-step blocks the session this long)")
	fs.StringVar(&c.ActionFormat, "action-format", "prompted", "default prompt format of /v1/actions/next: prompted, finetuned or tools")
	fs.IntVar(&c.ActionMaxTokens, "action-max-tokens", 512, "max_tokens of /v1/actions/next when a request gives none")
	fs.IntVar(&c.MaxPageBytes, "max-page-bytes", 512<<10, "largest page a next-action request may carry (413 above)")
	fs.IntVar(&c.MaxRationaleBytes, "max-rationale-bytes", 1000, "longest rationale of the prompted action format, in bytes")
	fs.IntVar(&c.MaxTextBytes, "max-text-bytes", 100, "longest text a type_and_submit action may type, in bytes")
	addOpsFlags(fs, &c)
	addLimitFlags(fs, &c.limitsConfig)
	if err := envDefaults(fs); err != nil {
		return c, err
	}
	c.APIKeys.fromEnv = true // a key on the command line replaces the environment's
	envModels := c.Models    // so does a --model
	c.Models = nil
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if len(c.Models) == 0 {
		c.Models = envModels
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return c, c.validate()
}

// envDefaults sets each flag from NEXTACT_<NAME> (dashes to underscores).
func envDefaults(fs *flag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := "NEXTACT_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}

func (c serveConfig) validate() error {
	switch {
	case c.Slots < 1 || c.Slots > batching.MaxSlots:
		return fmt.Errorf("--slots must be in [1, %d], got %d", batching.MaxSlots, c.Slots)
	case c.Ctx < 16:
		return fmt.Errorf("--ctx must be at least 16, got %d", c.Ctx)
	case c.Queue < 0:
		return fmt.Errorf("--queue must not be negative, got %d", c.Queue)
	case c.StepTokens != 0 && c.StepTokens < c.Slots:
		return fmt.Errorf("--step-tokens (%d) must be 0 (by device) or at least --slots (%d)", c.StepTokens, c.Slots)
	case c.Threads < 0:
		return fmt.Errorf("--threads must not be negative, got %d", c.Threads)
	case c.GPULayers < -1:
		return fmt.Errorf("--gpu-layers must be -1 or more, got %d", c.GPULayers)
	case c.BodyLimit < 1024:
		return fmt.Errorf("--body-limit must be at least 1024, got %d", c.BodyLimit)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("--request-timeout must be positive, got %s", c.RequestTimeout)
	case c.DefaultMaxTokens < 1:
		return fmt.Errorf("--default-max-tokens must be at least 1, got %d", c.DefaultMaxTokens)
	case c.SessionTTL <= 0 || c.MaxSessions < 1:
		return fmt.Errorf("--session-ttl and --max-sessions must be positive")
	case c.ActionMaxTokens < 1 || c.MaxPageBytes < 1 || c.MaxTextBytes < 1 || c.MaxRationaleBytes < 0:
		return fmt.Errorf("--action-max-tokens, --max-page-bytes and --max-text-bytes must be positive")
	}
	if c.GPUMemoryBudget != "auto" {
		var b byteSize
		if err := b.Set(c.GPUMemoryBudget); err != nil {
			return fmt.Errorf("--gpu-memory-budget: want auto or a size (20GiB), got %q", c.GPUMemoryBudget)
		}
	}
	if err := c.limitsConfig.validate(); err != nil {
		return err
	}
	if err := validateSessionStore(c.SessionStore, c.SessionLease); err != nil {
		return err
	}
	return c.validateOps()
}
