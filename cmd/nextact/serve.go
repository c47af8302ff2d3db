package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/models/registry"
	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/runtime/llamacpp"
	"github.com/nextact/nextact/runtime/nvml"
	"github.com/nextact/nextact/server"
)

// stack is a wired nextact: the model registry (each loaded model with its
// engine and scheduler) and the HTTP server.
type stack struct {
	srv    *server.Server
	reg    *registry.Registry
	models *modelSet
	// engine, sched and model are the first model's, when it is loaded at
	// start (a lone --model or the embedded model always is): for tests.
	engine *llamacpp.Engine
	sched  *batching.Scheduler
	model  *server.Model
	log    *zap.Logger
	// closers free what build made (registry, telemetry), last made
	// first.
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

// build reads the model sources, makes the registry, loads the models to
// preload and wires the server; nothing listens yet. On an error whatever
// it made is freed.
func build(c serveConfig, log *zap.Logger) (_ *stack, err error) {
	st := &stack{log: log}
	defer func() {
		if err != nil {
			_ = st.closers.close(context.Background())
		}
	}()
	keys, err := c.apiKeys()
	if err != nil {
		return nil, err
	}
	sessions, closeSessions, err := openSessionStore(c, log)
	if err != nil {
		return nil, err
	}
	if closeSessions != nil {
		st.closers.add(closeSessions)
	}
	devs := llamacpp.Devices()
	c.StepTokens = stepTokens(c, devs)
	specs, err := modelCatalog(c, resolvedGPULayers(c, devs), log)
	if err != nil {
		return nil, err
	}
	gpu := startTelemetry(c, log)
	st.closers.add(func(context.Context) error { closeTelemetry(gpu); return nil })
	budget, err := memoryBudget(c, gpuSignals(gpu), devs)
	if err != nil {
		return nil, err
	}
	metrics := server.NewMetrics()
	st.models = newModelSet(c, log, metrics, gpuSignals(gpu))
	st.reg, err = registry.New(registry.Config{Budget: budget, MaxRetryAfter: c.MaxRetryAfter}, specs,
		registry.Deps{Loader: st.models.load, Logger: log})
	if err != nil {
		return nil, err
	}
	st.models.reg = st.reg
	st.closers.add(st.reg.Close)
	log.Info("models", zap.Int("count", len(specs)), zap.Int64("gpu_budget_bytes", budget.GPU), zap.Int64("host_budget_bytes", budget.Host))
	if err := st.reg.Preload(context.Background()); err != nil {
		return nil, err
	}
	if inst := st.models.loaded(specs[0].ID); inst != nil {
		st.engine, st.sched, st.model = inst.engine, inst.sched, inst.model
		devs = inst.engine.Devices() // with the layers each holds
	}
	st.srv, err = server.New(server.Config{
		BodyLimit: c.BodyLimit, RequestTimeout: c.RequestTimeout, DefaultMaxTokens: c.DefaultMaxTokens,
		HeaderLimit: c.HeaderLimit, APIKeys: keys, RateLimit: c.RateLimit, RateBurst: c.RateBurst,
		SessionTTL: c.SessionTTL, MaxSessions: c.MaxSessions, SessionLease: c.SessionLease,
		HeaderTimeout: c.HeaderTimeout, MaxMessages: c.MaxMessages, MaxStopBytes: c.MaxStopBytes,
		MaxSessionBytes: int(c.MaxSessionBytes), ModelLoadWait: c.MaxQueueWait,
	}, server.Deps{Logger: log, Clock: time.Now, Source: st.models, Loads: st.models, Sessions: sessions,
		Metrics: metrics, GPU: gpuSignals(gpu), Devices: serverDevices(devs)})
	if err != nil {
		return nil, err
	}
	log.Info("server ready to listen", zap.Int("api_keys", len(keys)), zap.Float64("rate_limit", c.RateLimit))
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

// actionConfig sets up a model's constrained decoding (structured
// outputs) and its next-action planner (actionFormat its default format,
// ctx its context per slot).
func actionConfig(c serveConfig, engine *llamacpp.Engine, chat models.ChatFormat, actionFormat string, ctx int) (*nextaction.Grammars, *nextaction.Planner, error) {
	format, err := nextaction.ParseFormat(actionFormat)
	if err != nil {
		return nil, nil, fmt.Errorf("action format: %w", err)
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
		MaxPageBytes: c.MaxPageBytes, DefaultMaxTokens: c.ActionMaxTokens, ContextLength: ctx,
		MaxMessages: c.MaxMessages,
	})
	if err != nil {
		return nil, nil, err
	}
	return grammars, planner, nil
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
	// Ready before the log says where: whoever reads "listening" finds
	// /health/ready at 200 (the models to preload are loaded; connections
	// wait in the backlog until Serve accepts them).
	st.srv.MarkReady()
	log.Info("listening", zap.String("addr", ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- st.srv.Serve(ln) }()
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

// The engine is the server's tokenizer and vocabulary.
var (
	_ server.Tokenizer  = (*llamacpp.Engine)(nil)
	_ server.Vocabulary = (*llamacpp.Engine)(nil)
)
