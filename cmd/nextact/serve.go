package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/runtime/llamacpp"
	"github.com/nextact/nextact/runtime/nvml"
	"github.com/nextact/nextact/server"
)

// stack is a wired nextact: engine, scheduler and HTTP server.
type stack struct {
	engine *llamacpp.Engine
	sched  *batching.Scheduler
	srv    *server.Server
	model  *server.Model
	log    *zap.Logger
	// closers free what build made (scheduler, telemetry, engine), last
	// made first.
	closers closers
}

// closers is a stack of cleanups: close runs them last added first.
type closers []func(context.Context) error

func (cs *closers) add(f func(context.Context) error) { *cs = append(*cs, f) }

func (cs closers) close(ctx context.Context) error {
	var errs []error
	for i := len(cs) - 1; i >= 0; i-- {
		errs = append(errs, cs[i](ctx))
	}
	return errors.Join(errs...)
}

// build loads the model and wires everything; nothing listens yet. On an
// error whatever it made is freed.
func build(c serveConfig, log *zap.Logger) (_ *stack, err error) {
	st := &stack{log: log}
	defer func() {
		if err != nil {
			_ = st.closers.close(context.Background())
		}
	}()
	path := c.Model
	if path == "" {
		p, err := models.EnsureDefault(c.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("embedded model: %w", err)
		}
		path = p
	}
	info, err := models.Inspect(path)
	if err != nil {
		return nil, err
	}
	if info.Architecture != "llama" {
		log.Warn("not a Llama-architecture model; llama.cpp may still serve it", zap.String("architecture", info.Architecture))
	}
	format, err := chatFormat(c.ChatFormat, info)
	if err != nil {
		return nil, err
	}
	if info.ContextLength > 0 && c.Ctx > info.ContextLength {
		return nil, fmt.Errorf("--ctx %d exceeds the model's trained context of %d", c.Ctx, info.ContextLength)
	}
	kvPerToken := info.KVBytesPerToken()
	if err := checkKVBudget(c.Slots, c.Ctx, kvPerToken, c.KVBudget); err != nil {
		return nil, err
	}
	keys, err := c.apiKeys()
	if err != nil {
		return nil, err
	}
	c.StepTokens = stepTokens(c, llamacpp.Devices())
	engine, err := llamacpp.Open(llamacpp.Config{
		ModelPath: path, GPULayers: c.GPULayers, Slots: c.Slots, CtxPerSlot: c.Ctx,
		StepTokens: c.StepTokens, Threads: c.Threads, FlashAttention: c.FlashAttention,
		Deterministic: c.Deterministic,
	}, log)
	if err != nil {
		return nil, err
	}
	st.engine = engine
	st.closers.add(func(context.Context) error { engine.Close(); return nil })
	gpu := startTelemetry(c, log)
	st.closers.add(func(context.Context) error { closeTelemetry(gpu); return nil })
	metrics := server.NewMetrics()
	sched, err := batching.New(engine, engine, batching.Config{
		Slots: c.Slots, QueueSize: c.Queue, StepTokens: c.StepTokens, CtxPerSlot: c.Ctx,
		Admission: c.admission(), GPU: gpuSignals(gpu), Observer: metrics, NoPrefixCache: c.NoPrefixCache,
	}, log)
	if err != nil {
		return nil, err
	}
	st.sched = sched
	st.closers.add(sched.Close)
	id := c.ModelID
	if id == "" {
		id = info.Name
	}
	grammars, planner, err := actionConfig(c, engine, format)
	if err != nil {
		return nil, err
	}
	st.model = &server.Model{
		ID: id, Created: modTime(path), OwnedBy: "nextact", ContextLength: c.Ctx,
		Format: format, BOS: engine.BOS(), Tokenizer: engine, Generator: sched,
		Grammars: grammars, Actions: planner,
	}
	st.srv, err = server.New(server.Config{
		BodyLimit: c.BodyLimit, RequestTimeout: c.RequestTimeout, DefaultMaxTokens: c.DefaultMaxTokens,
		HeaderLimit: c.HeaderLimit, APIKeys: keys, RateLimit: c.RateLimit, RateBurst: c.RateBurst,
		SessionTTL: c.SessionTTL, MaxSessions: c.MaxSessions,
		HeaderTimeout: c.HeaderTimeout, MaxMessages: c.MaxMessages, MaxStopBytes: c.MaxStopBytes,
		MaxSessionBytes: int(c.MaxSessionBytes),
	}, server.Deps{Logger: log, Clock: time.Now, Models: []*server.Model{st.model},
		Metrics: metrics, Load: sched, GPU: gpuSignals(gpu), Devices: serverDevices(engine.Devices())})
	if err != nil {
		return nil, err
	}
	log.Info("serving model", zap.String("id", id), zap.String("path", path),
		zap.String("chat_format", string(format)), zap.Int("trained_ctx", info.ContextLength),
		zap.Int64("kv_bytes_per_token", kvPerToken), zap.Int64("kv_bytes", kvPerToken*int64(c.Slots)*int64(c.Ctx)),
		zap.Int("api_keys", len(keys)), zap.Float64("rate_limit", c.RateLimit))
	return st, nil
}

// Default step token budgets (--step-tokens 0). A step carries one token
// per decoding sequence plus prompt chunks up to the budget. On a CPU a
// step's time grows with its tokens, so a small budget keeps decoding
// sequences' inter-token latency low while prompts are read; on a GPU a
// step of a few thousand tokens costs little more than one of a few
// hundred (the weights are read once either way), so a larger budget
// reads prompts several times faster at a small cost in latency.
const (
	cpuStepTokens = 512
	gpuStepTokens = 2048
)

// stepTokens resolves --step-tokens: the flag's value, or by device when 0
// (never below --slots, which every step may need for decode tokens).
func stepTokens(c serveConfig, devs []llamacpp.Device) int {
	if c.StepTokens > 0 {
		return c.StepTokens
	}
	n := cpuStepTokens
	for _, d := range devs {
		if d.GPU() && c.GPULayers != 0 {
			n = gpuStepTokens
		}
	}
	return max(n, c.Slots)
}

// serverDevices converts the engine's device list to the server's.
func serverDevices(devs []llamacpp.Device) []server.Device {
	out := make([]server.Device, len(devs))
	for i, d := range devs {
		out[i] = server.Device{
			Name: d.Name, Description: d.Description, Type: d.Type, Library: d.Library,
			ComputeCapability: d.ComputeCapability(), MemoryTotalBytes: d.MemoryTotal,
			MemoryFreeBytes: d.MemoryFree, Layers: d.Layers,
		}
	}
	return out
}

// actionConfig sets up the model's constrained decoding (structured
// outputs) and its next-action planner.
func actionConfig(c serveConfig, engine *llamacpp.Engine, chat models.ChatFormat) (*nextaction.Grammars, *nextaction.Planner, error) {
	format, err := nextaction.ParseFormat(c.ActionFormat)
	if err != nil {
		return nil, nil, fmt.Errorf("--action-format: %w", err)
	}
	vocab, err := nextaction.NewVocab(engine.Pieces(), engine.Special(), engine.EOGTokens())
	if err != nil {
		return nil, nil, err
	}
	grammars, err := nextaction.NewGrammars(vocab, nextaction.NewGrammarCache(int64(c.GrammarCacheBytes)), c.schemaLimits())
	if err != nil {
		return nil, nil, err
	}
	planner, err := nextaction.NewPlanner(nextaction.PlannerConfig{
		ChatFormat: chat, Tokenizer: engine, Grammars: grammars, DefaultFormat: format,
		Limits:       nextaction.Limits{MaxRationaleBytes: c.MaxRationaleBytes, MaxTextBytes: c.MaxTextBytes},
		MaxPageBytes: c.MaxPageBytes, DefaultMaxTokens: c.ActionMaxTokens, ContextLength: c.Ctx,
		MaxMessages: c.MaxMessages,
	})
	if err != nil {
		return nil, nil, err
	}
	return grammars, planner, nil
}

func chatFormat(flagValue string, info models.Info) (models.ChatFormat, error) {
	if flagValue != "" {
		return models.ParseChatFormat(flagValue)
	}
	f, err := models.DetectChatFormat(info.ChatTemplate)
	if err != nil {
		return "", fmt.Errorf("model %s: %w", info.Path, err)
	}
	return f, nil
}

func modTime(path string) time.Time {
	if st, err := os.Stat(path); err == nil {
		return st.ModTime()
	}
	return time.Now()
}

// shutdown drains (readiness 503, new requests 503, in-flight requests
// finish within ctx), stops accepting, ends whatever is left, and frees the
// engine.
func (s *stack) shutdown(ctx context.Context) error {
	derr := s.srv.Drain(ctx)
	herr := s.srv.Shutdown(ctx)
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ctx.Err() == nil {
		closeCtx = ctx
	}
	return errors.Join(derr, herr, s.closers.close(closeCtx))
}

// startTelemetry starts NVML sampling unless --gpu-sample-interval is 0.
// Without a driver it logs and admission uses the scheduler's own signals.
func startTelemetry(c serveConfig, log *zap.Logger) *nvml.Sampler {
	if c.GPUSampleInterval == 0 {
		log.Info("GPU telemetry off (--gpu-sample-interval 0)")
		return nil
	}
	s := nvml.New(nvml.Config{Interval: c.GPUSampleInterval, Logger: log})
	s.Start()
	return s
}

// gpuSignals avoids a typed nil interface when telemetry is off.
func gpuSignals(s *nvml.Sampler) admission.GPUSignals {
	if s == nil {
		return nil
	}
	return s
}

func closeTelemetry(s *nvml.Sampler) {
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Close(ctx)
}

// serve runs `nextact serve` until ctx ends (SIGINT/SIGTERM), then drains.
func serve(ctx context.Context, args []string, stderr io.Writer) error {
	c, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(c.LogLevel, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	st, err := build(c, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		_ = st.shutdown(context.Background())
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("listening", zap.String("addr", ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- st.srv.Serve(ln) }()
	st.srv.MarkReady() // the model is loaded; connections wait in the backlog
	select {
	case err := <-errc:
		_ = st.shutdown(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("draining: readiness 503, new requests 503, in-flight requests finish", zap.Duration("timeout", c.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	if err := st.shutdown(sctx); err != nil {
		log.Warn("shutdown", zap.Error(err))
	}
	log.Info("stopped")
	return nil
}

// newLogger builds the JSON logger every component gets injected, and routes
// llama.cpp's own log lines (written through log/slog's default level) to
// warnings and above unless debugging.
func newLogger(level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), lvl)
	slogLevel := slog.LevelWarn
	if lvl == zapcore.DebugLevel {
		slogLevel = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slogLevel})))
	return zap.New(core), nil
}
