package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/models/catalog"
	"github.com/nextact/nextact/models/ollama"
	"github.com/nextact/nextact/models/registry"
	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/runtime/llamacpp"
	"github.com/nextact/nextact/server"
)

// modelInstance is one loaded model: its engine, its own scheduler (slots,
// queue, prefix cache), planner and grammars, and the server's view of
// them. Close drains the scheduler (its requests finish, within ctx) and
// frees the engine.
type modelInstance struct {
	model  *server.Model
	engine *llamacpp.Engine
	sched  *batching.Scheduler
	// closed tells the models set the instance is gone.
	closed func()
}

func (m *modelInstance) Close(ctx context.Context) error {
	m.closed()
	err := m.sched.Close(ctx)
	m.engine.Close()
	return err
}

var _ registry.Instance = (*modelInstance)(nil)

// modelSet loads models for the registry and serves them to the server:
// it is the registry's Loader, the server's ModelSource and its
// ModelLoads (the load gauges of every loaded model).
type modelSet struct {
	c       serveConfig
	log     *zap.Logger
	metrics *server.Metrics
	gpu     admission.GPUSignals
	reg     *registry.Registry

	mu   sync.Mutex
	live map[string]*modelInstance // by model ID
}

func newModelSet(c serveConfig, log *zap.Logger, metrics *server.Metrics, gpu admission.GPUSignals) *modelSet {
	return &modelSet{c: c, log: log, metrics: metrics, gpu: gpu, live: map[string]*modelInstance{}}
}

// load builds a model of the registry: engine, scheduler, grammars and
// planner; on an error whatever it made is freed.
func (ms *modelSet) load(_ context.Context, s registry.Spec) (_ registry.Instance, err error) {
	c := ms.c
	info, err := models.Inspect(s.Path)
	if err != nil {
		return nil, err
	}
	if info.Architecture != "llama" {
		ms.log.Warn("not a Llama-architecture model; llama.cpp may still serve it", zap.String("model", s.ID), zap.String("architecture", info.Architecture))
	}
	format, err := models.ParseChatFormat(s.ChatFormat)
	if err != nil {
		return nil, err
	}
	kvPerToken := info.KVBytesPerToken()
	if err := checkKVBudget(s.Slots, s.Ctx, kvPerToken, c.KVBudget); err != nil {
		return nil, err
	}
	steps := max(c.StepTokens, s.Slots)
	engine, err := llamacpp.Open(llamacpp.Config{
		ModelPath: s.Path, GPULayers: c.GPULayers, Slots: s.Slots, CtxPerSlot: s.Ctx,
		StepTokens: steps, Threads: c.Threads, FlashAttention: c.FlashAttention,
		Deterministic: c.Deterministic,
	}, ms.log.With(zap.String("model", s.ID)))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			engine.Close()
		}
	}()
	grammars, planner, err := actionConfig(c, engine, format, cmp.Or(s.ActionFormat, c.ActionFormat), s.Ctx)
	if err != nil {
		return nil, err
	}
	sched, err := batching.New(engine, engine, batching.Config{
		Slots: s.Slots, QueueSize: c.Queue, StepTokens: steps, CtxPerSlot: s.Ctx,
		Admission: c.admission(), GPU: ms.gpu, Observer: ms.metrics.Model(s.ID), NoPrefixCache: c.NoPrefixCache,
		HostKVBudget: int64(c.HostKVBudget),
	}, ms.log.With(zap.String("model", s.ID)))
	if err != nil {
		return nil, err
	}
	created := s.Details.Modified
	if created.IsZero() {
		created = modTime(s.Path)
	}
	m := &server.Model{
		ID: s.ID, Created: created, OwnedBy: "nextact", ContextLength: s.Ctx,
		Format: format, BOS: engine.BOS(), Tokenizer: engine, Vocab: engine, Generator: sched,
		Grammars: grammars, Actions: planner,
		Defaults: server.SamplingDefaults{
			Temperature: s.Sampling.Temperature, TopP: s.Sampling.TopP, TopK: s.Sampling.TopK,
			Seed: s.Sampling.Seed, MaxTokens: s.Sampling.MaxTokens, Stop: s.Sampling.Stop,
		},
	}
	if err := server.CheckModel(m); err != nil {
		_ = sched.Close(context.Background())
		return nil, err
	}
	inst := &modelInstance{model: m, engine: engine, sched: sched}
	inst.closed = func() { ms.remove(s.ID, inst) }
	ms.mu.Lock()
	ms.live[s.ID] = inst
	ms.mu.Unlock()
	ms.log.Info("serving model", zap.String("id", s.ID), zap.String("path", s.Path),
		zap.String("chat_format", string(format)), zap.Int("trained_ctx", info.ContextLength),
		zap.Int("slots", s.Slots), zap.Int("ctx", s.Ctx),
		zap.Int64("kv_bytes_per_token", kvPerToken), zap.Int64("kv_bytes", kvPerToken*int64(s.Slots)*int64(s.Ctx)))
	return inst, nil
}

func (ms *modelSet) remove(id string, inst *modelInstance) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.live[id] == inst {
		delete(ms.live, id)
	}
}

// Acquire leases a model of the registry for one request.
func (ms *modelSet) Acquire(ctx context.Context, name string) (*server.Model, func(), error) {
	l, err := ms.reg.Acquire(ctx, name)
	if err != nil {
		return nil, nil, acquireError(name, err)
	}
	return l.Instance().(*modelInstance).model, l.Release, nil
}

// acquireError turns the registry's errors into the server's.
func acquireError(name string, err error) error {
	var ime *registry.InsufficientMemoryError
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return server.ErrModelNotFound
	case errors.Is(err, registry.ErrClosed):
		return batching.ErrClosed
	case errors.As(err, &ime):
		return &server.InsufficientMemoryError{Model: ime.ID, Never: ime.Never, RetryAfter: ime.RetryAfter,
			Detail: fmt.Sprintf("it needs %s, the budget is %s, and loaded models hold %s", ime.Need, ime.Budget, ime.InUse)}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return &server.ModelLoadError{Model: name, Err: err}
}

// List describes every model of the registry.
func (ms *modelSet) List() []server.ModelStatus {
	all := ms.reg.List()
	out := make([]server.ModelStatus, len(all))
	for i, st := range all {
		d := st.Spec.Details
		out[i] = server.ModelStatus{
			ID: st.Spec.ID, Aliases: st.Spec.Aliases, Created: d.Modified, OwnedBy: "nextact",
			ContextLength: st.Spec.Ctx, Loaded: st.Loaded, ExpiresAt: st.ExpiresAt,
			SizeBytes: st.Spec.Memory.GPU + st.Spec.Memory.Host, GPUBytes: st.Spec.Memory.GPU,
			Details: server.ModelDetails{
				Format: d.Format, Family: d.Family, ParameterSize: d.ParameterSize, Quantization: d.Quantization,
				FileSize: d.FileSize, Digest: d.Digest, Template: d.Template, System: d.System,
			},
		}
	}
	return out
}

// SetKeepAlive sets a model's keep_alive for its current requests (an
// Ollama request's keep_alive).
func (ms *modelSet) SetKeepAlive(name string, d time.Duration) error {
	if err := ms.reg.SetKeepAlive(name, d); err != nil {
		return acquireError(name, err)
	}
	return nil
}

// Unload unloads a model once idle (Ollama's keep_alive 0 without a
// prompt).
func (ms *modelSet) Unload(name string) error {
	if err := ms.reg.Unload(name); err != nil {
		return acquireError(name, err)
	}
	return nil
}

// ModelLoads is the scheduler load of every loaded model, by ID.
func (ms *modelSet) ModelLoads() []server.ModelLoad {
	ms.mu.Lock()
	out := make([]server.ModelLoad, 0, len(ms.live))
	for id, inst := range ms.live {
		out = append(out, server.ModelLoad{Model: id, Stats: inst.sched.Stats()})
	}
	ms.mu.Unlock()
	slices.SortFunc(out, func(a, b server.ModelLoad) int { return strings.Compare(a.Model, b.Model) })
	return out
}

// loaded returns a loaded model's instance (nil when it is not loaded).
func (ms *modelSet) loaded(id string) *modelInstance {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.live[id]
}

var (
	_ server.ModelSource = (*modelSet)(nil)
	_ server.ModelKeeper = (*modelSet)(nil)
	_ server.ModelLoads  = (*modelSet)(nil)
)

// modelCatalog reads the model flags into registry specs; with none it
// serves the embedded generated model. Discovered models that cannot be
// served are logged and left out.
func modelCatalog(c serveConfig, gpuLayers int, log *zap.Logger) ([]registry.Spec, error) {
	src := catalog.Sources{Models: c.Models, ModelID: c.ModelID, ModelsFile: c.ModelsFile, ModelsDir: c.ModelsDir, OllamaDir: c.OllamaModels}
	switch c.OllamaModels {
	case "none":
		src.OllamaDir = ""
	case "":
		src.OllamaDir = defaultOllamaDir()
		src.OllamaDefault = true
	}
	if src.Empty() {
		p, err := models.EnsureDefault(c.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("embedded model: %w", err)
		}
		src.Models = []string{p}
	}
	cat, err := catalog.Build(src, catalog.Defaults{
		ChatFormat: c.ChatFormat, ActionFormat: c.ActionFormat, Slots: c.Slots, Ctx: c.Ctx,
		StepTokens: c.StepTokens, GPULayers: gpuLayers, KeepAlive: time.Duration(c.KeepAlive),
		CheckActionFormat: func(s string) error { _, err := nextaction.ParseFormat(s); return err },
	})
	if err != nil {
		return nil, err
	}
	for _, p := range cat.Problems {
		log.Warn("model not served", zap.String("source", p.Source), zap.String("name", p.Name), zap.Error(p.Err))
	}
	if len(cat.Specs) == 0 {
		return nil, errors.New("no servable model in the given sources")
	}
	return cat.Specs, nil
}

// defaultOllamaDir is --ollama-models' default: $OLLAMA_MODELS, else
// ~/.ollama/models when it exists, else none.
func defaultOllamaDir() string {
	home, _ := os.UserHomeDir()
	if dir, ok := ollama.DefaultDir(os.Getenv, home); ok {
		return dir
	}
	return ""
}

// gpuBudgetMargin is what the default GPU budget leaves free: the larger
// of 512 MiB and a tenth of the free memory (the CUDA context, cuBLAS
// workspaces and fragmentation the estimate does not count).
func gpuBudgetMargin(free int64) int64 { return max(512<<20, free/10) }

// memoryBudget resolves --gpu-memory-budget ("auto": the free GPU memory,
// from NVML when telemetry runs, else as the GPU backend reports it, less
// a margin; no GPU: no bound) and --host-memory-budget.
func memoryBudget(c serveConfig, gpu admission.GPUSignals, devs []llamacpp.Device) (registry.Memory, error) {
	b := registry.Memory{Host: int64(c.HostMemoryBudget)}
	if c.GPUMemoryBudget != "auto" {
		var v byteSize
		if err := v.Set(c.GPUMemoryBudget); err != nil {
			return b, fmt.Errorf("--gpu-memory-budget: %w", err)
		}
		b.GPU = int64(v)
		return b, nil
	}
	var free int64
	if gpu != nil {
		if s, ok := gpu.Snapshot(); ok {
			for _, d := range s.Devices {
				free += int64(d.MemoryTotal) - int64(d.MemoryUsed)
			}
		}
	}
	if free == 0 {
		for _, d := range devs {
			if d.GPU() {
				free += int64(d.MemoryFree)
			}
		}
	}
	if free > 0 {
		b.GPU = max(free-gpuBudgetMargin(free), 1)
	}
	return b, nil
}

// resolvedGPULayers is --gpu-layers for memory estimates: -1 (all) when a
// GPU backend is present and the flag asks for all, else the flag, and 0
// without a GPU.
func resolvedGPULayers(c serveConfig, devs []llamacpp.Device) int {
	if !slices.ContainsFunc(devs, llamacpp.Device.GPU) {
		return 0
	}
	return c.GPULayers
}

// modelTime is a file's modification time, for a model's created field.
func modTime(path string) time.Time {
	if st, err := os.Stat(filepath.Clean(path)); err == nil {
		return st.ModTime()
	}
	return time.Now()
}
