// Package llamacpp runs GGUF models in-process with llama.cpp through
// github.com/ollama/ollama/llama. It is the only package of nextact that
// uses cgo.
//
// llama.cpp aborts the whole process on some invalid inputs (GGML_ASSERT),
// and Go cannot recover from that, so every call that crosses into C is
// validated here first: token ids, positions, sequence ids and batch sizes.
package llamacpp

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ollama/ollama/llama"
	"github.com/ollama/ollama/ml"
	"go.uber.org/zap"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
)

// GPULayersAuto offloads every layer when a GPU backend is present and none
// otherwise.
const GPULayersAuto = -1

// Config describes the model and the context to create.
type Config struct {
	ModelPath string
	// GPULayers is the number of layers offloaded to the GPU, or GPULayersAuto.
	GPULayers int
	// Slots is the number of sequences the context holds.
	Slots int
	// CtxPerSlot is the number of positions of each sequence.
	CtxPerSlot int
	// StepTokens is the most tokens one Decode may carry.
	StepTokens int
	// Threads for the CPU backend; 0 means half the CPUs (at least one).
	// ggml's workers spin at barriers, so more threads than free cores
	// slows every step down sharply on a busy machine.
	Threads int
	// FlashAttention: "auto", "on" or "off" ("" is auto).
	FlashAttention string
	// Deterministic asks a CUDA backend built by `make cuda` for the same
	// kernels and reduction order at every batch size (its patch set reads
	// GGML_CUDA_DETERMINISTIC, which Open sets for the whole process), so
	// greedy output does not depend on the batch; with a GPU it also turns
	// flash attention on when FlashAttention is auto. The CPU backend is
	// batch-invariant without it.
	Deterministic bool
}

func (c *Config) validate() error {
	switch {
	case c.ModelPath == "":
		return errors.New("model path is empty")
	case c.Slots < 1 || c.Slots > batching.MaxSlots: // llama.cpp's LLAMA_MAX_SEQ
		return fmt.Errorf("slots must be in [1, %d], got %d", batching.MaxSlots, c.Slots)
	case c.CtxPerSlot < 2:
		return fmt.Errorf("context per slot must be at least 2, got %d", c.CtxPerSlot)
	case c.StepTokens < 1:
		return fmt.Errorf("step tokens must be at least 1, got %d", c.StepTokens)
	case c.Threads < 0:
		return fmt.Errorf("threads must not be negative, got %d", c.Threads)
	}
	return nil
}

// Engine is a loaded model with one context of Slots sequences. Decode,
// Logits and ClearSeq are for one goroutine (the scheduler's loop);
// Tokenize and the Vocab methods are goroutine-safe.
type Engine struct {
	cfg   Config
	log   *zap.Logger
	model *llama.Model
	ctx   *llama.Context
	batch *llama.Batch

	nVocab  int
	pieces  []string
	eog     []bool
	special []bool
	bos     []int32
	gpu     bool
	devices []Device
	// specials finds special-token texts, to cut long prompts (tokenize.go).
	specials *specialTrie

	// cctx is ctx's *C.struct_llama_context (logits.go).
	cctx unsafe.Pointer
	// outRow maps an entry of the last decoded batch to its row in the
	// engine's logits buffer, or -1 when its logits were not requested.
	outRow []int32
	// logits is the address of that buffer, read at the first Logits call
	// after a Decode (which synchronises); nil until then.
	logits unsafe.Pointer

	closeOnce sync.Once
}

var (
	_ batching.Engine   = (*Engine)(nil)
	_ batching.Vocab    = (*Engine)(nil)
	_ batching.KVReuser = (*Engine)(nil)
)

var backendInit = sync.OnceFunc(llama.BackendInit)

// Open loads the model and creates its context.
func Open(cfg Config, log *zap.Logger) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("engine config: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Threads == 0 {
		cfg.Threads = max(1, runtime.NumCPU()/2)
	}
	// llama.cpp aborts the process on some malformed files: the file is
	// checked in Go first, whoever calls Open.
	if _, err := models.Inspect(cfg.ModelPath); err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	setDeterministic(cfg.Deterministic)
	devs := Devices()
	gpus := 0
	for _, d := range devs {
		if d.GPU() {
			gpus++
		}
	}
	layers := cfg.GPULayers
	if layers == GPULayersAuto {
		layers = 0
		if gpus > 0 {
			layers = 999
		}
	}
	fa, err := flashAttention(cfg.FlashAttention)
	if err != nil {
		return nil, err
	}
	if cfg.Deterministic && gpus > 0 && layers > 0 {
		switch fa {
		case ml.FlashAttentionAuto:
			fa = ml.FlashAttentionEnabled // the patched attention is flash attention's
		case ml.FlashAttentionDisabled:
			log.Warn("--deterministic with --flash-attn off: attention without flash attention is not batch-invariant on a GPU")
		}
	}
	model, err := llama.LoadModelFromFile(cfg.ModelPath, llama.ModelParams{NumGpuLayers: layers, UseMmap: true})
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	nLayer := modelLayers(model)
	assignLayers(devs, nLayer, layers)
	params := llama.NewContextParams(cfg.CtxPerSlot*cfg.Slots, cfg.StepTokens, cfg.Slots, cfg.Threads, fa, "")
	lctx, err := llama.NewContextWithModel(model, params)
	if err != nil {
		llama.FreeModel(model)
		return nil, fmt.Errorf("create context: %w", err)
	}
	batch, err := llama.NewBatch(cfg.StepTokens, 1, 0)
	if err != nil {
		llama.FreeModel(model)
		return nil, fmt.Errorf("create batch: %w", err)
	}
	e := &Engine{cfg: cfg, log: log.Named("llamacpp"), model: model, ctx: lctx, batch: batch, gpu: layers > 0 && gpus > 0, devices: devs}
	e.cctx = contextPtr(lctx)
	if err := e.loadVocab(); err != nil {
		e.Close()
		return nil, err
	}
	offloaded := 0
	if gpus > 0 {
		offloaded = min(max(layers, 0), nLayer+1)
	}
	e.logDevices()
	e.log.Info("model loaded",
		zap.String("path", cfg.ModelPath), zap.Int("vocab", e.nVocab), zap.Int("layers", nLayer+1),
		zap.Int("gpu_layers", offloaded), zap.Int("gpus", gpus),
		zap.Int("slots", cfg.Slots), zap.Int("ctx_per_slot", cfg.CtxPerSlot), zap.Int("step_tokens", cfg.StepTokens),
		zap.Int("threads", cfg.Threads), zap.String("flash_attention", faName(fa)), zap.Bool("deterministic", cfg.Deterministic))
	return e, nil
}

// logDevices logs every device ggml found and the layers it holds.
func (e *Engine) logDevices() {
	for _, d := range e.devices {
		e.log.Info("device",
			zap.String("name", d.Name), zap.String("description", d.Description), zap.String("type", d.Type),
			zap.String("library", d.Library), zap.String("id", d.ID),
			zap.Uint64("memory_total", d.MemoryTotal), zap.Uint64("memory_free", d.MemoryFree),
			zap.String("compute_capability", d.ComputeCapability()), zap.Int("layers", d.Layers))
	}
}

// Devices returns the devices ggml found and how many layers each holds.
func (e *Engine) Devices() []Device { return append([]Device(nil), e.devices...) }

func faName(t ml.FlashAttentionType) string {
	switch t {
	case ml.FlashAttentionEnabled:
		return "on"
	case ml.FlashAttentionDisabled:
		return "off"
	}
	return "auto"
}

func flashAttention(s string) (ml.FlashAttentionType, error) {
	switch s {
	case "", "auto":
		return ml.FlashAttentionAuto, nil
	case "on":
		return ml.FlashAttentionEnabled, nil
	case "off":
		return ml.FlashAttentionDisabled, nil
	}
	return 0, fmt.Errorf("flash attention must be auto, on or off, got %q", s)
}

// loadVocab caches every token's piece and end-of-generation flag, so the
// per-token path never crosses into C for them.
func (e *Engine) loadVocab() error {
	e.nVocab = e.model.NumVocab()
	if e.nVocab <= 0 {
		return errors.New("model has an empty vocabulary")
	}
	e.pieces = make([]string, e.nVocab)
	e.eog = make([]bool, e.nVocab)
	e.special = make([]bool, e.nVocab)
	e.specials = newSpecialTrie()
	for i := range e.nVocab {
		e.pieces[i] = e.model.TokenToPiece(i)
		e.eog[i] = e.model.TokenIsEog(i)
		e.special[i] = e.eog[i] || isControl(e.model, i)
		if attr := vocabAttr(e.model, i); attr&(attrControl|attrUserDefined|attrUnknown) != 0 {
			e.specials.add(vocabText(e.model, i), attr)
		}
	}
	bos, err := e.model.Tokenize("", true, false)
	if err != nil {
		return fmt.Errorf("tokenize bos: %w", err)
	}
	for _, t := range bos {
		e.bos = append(e.bos, int32(t))
	}
	return nil
}

// GPU reports whether layers were offloaded to a GPU.
func (e *Engine) GPU() bool { return e.gpu }

// BOS is what the model puts before a raw prompt (empty when it adds none).
func (e *Engine) BOS() []int32 { return append([]int32(nil), e.bos...) }

// Size is the vocabulary size.
func (e *Engine) Size() int { return e.nVocab }

// Piece is the raw text of a token ("" outside the vocabulary).
func (e *Engine) Piece(tok int32) string {
	if tok < 0 || int(tok) >= e.nVocab {
		return ""
	}
	return e.pieces[tok]
}

// Pieces returns every token's raw bytes, indexed by token id (shared:
// do not modify).
func (e *Engine) Pieces() []string { return e.pieces }

// Special returns, by token id, whether a token is a control or
// end-of-generation token (shared: do not modify).
func (e *Engine) Special() []bool { return e.special }

// EOGTokens lists the end-of-generation tokens.
func (e *Engine) EOGTokens() []int32 {
	var out []int32
	for i, x := range e.eog {
		if x {
			out = append(out, int32(i))
		}
	}
	return out
}

// IsEOG reports whether tok ends generation.
func (e *Engine) IsEOG(tok int32) bool {
	return tok >= 0 && int(tok) < e.nVocab && e.eog[tok]
}

// Decode validates the batch and evaluates it. On a GPU it may return
// before the computation ends; the first Logits call waits for it. It
// invalidates every logits view of the previous step.
func (e *Engine) Decode(b *batching.Batch) error {
	e.outRow, e.logits = e.outRow[:0], nil
	if err := e.check(b); err != nil {
		return err
	}
	e.batch.Clear()
	var out int32
	for i := range b.Len() {
		e.batch.Add(int(b.Tokens[i]), nil, int(b.Pos[i]), b.Logits[i], int(b.Seq[i]))
		row := int32(-1)
		if b.Logits[i] {
			row, out = out, out+1
		}
		e.outRow = append(e.outRow, row)
	}
	if err := e.ctx.Decode(e.batch); err != nil {
		e.outRow = e.outRow[:0]
		return fmt.Errorf("decode %d tokens: %w", b.Len(), err)
	}
	return nil
}

// check rejects anything llama.cpp would abort on.
func (e *Engine) check(b *batching.Batch) error {
	n := b.Len()
	if n == 0 || n > e.cfg.StepTokens {
		return fmt.Errorf("batch of %d tokens, want 1..%d", n, e.cfg.StepTokens)
	}
	if len(b.Pos) != n || len(b.Seq) != n || len(b.Logits) != n {
		return errors.New("batch slices differ in length")
	}
	for i := range n {
		var err error
		switch {
		case b.Seq[i] < 0 || int(b.Seq[i]) >= e.cfg.Slots:
			return fmt.Errorf("entry %d: sequence %d outside [0, %d)", i, b.Seq[i], e.cfg.Slots)
		case b.Tokens[i] < 0 || int(b.Tokens[i]) >= e.nVocab:
			err = fmt.Errorf("entry %d: token %d outside the vocabulary of %d", i, b.Tokens[i], e.nVocab)
		case b.Pos[i] < 0 || int(b.Pos[i]) >= e.cfg.CtxPerSlot:
			err = fmt.Errorf("entry %d: position %d outside [0, %d)", i, b.Pos[i], e.cfg.CtxPerSlot)
		}
		if err != nil {
			// Only this entry's sequence is at fault: the scheduler fails it
			// alone.
			return &batching.SeqError{Seq: b.Seq[i], Err: err}
		}
	}
	return nil
}

// Logits returns the logits of batch entry i of the last Decode: a view
// of llama.cpp's output buffer (no copy, no allocation), valid until the
// next Decode overwrites it (see batching.Engine).
func (e *Engine) Logits(i int) ([]float32, error) {
	if i < 0 || i >= len(e.outRow) || e.outRow[i] < 0 {
		return nil, fmt.Errorf("no logits were requested for batch entry %d", i)
	}
	return e.logitsView(int(e.outRow[i]))
}

// ClearSeq removes a sequence's KV.
func (e *Engine) ClearSeq(seq int32) error {
	if seq < 0 || int(seq) >= e.cfg.Slots {
		return fmt.Errorf("sequence %d outside [0, %d)", seq, e.cfg.Slots)
	}
	if !e.ctx.KvCacheSeqRm(int(seq), 0, -1) {
		return fmt.Errorf("clear sequence %d: refused", seq)
	}
	return nil
}

// TrimSeq drops a sequence's positions from keep on.
func (e *Engine) TrimSeq(seq int32, keep int) error {
	if seq < 0 || int(seq) >= e.cfg.Slots {
		return fmt.Errorf("sequence %d outside [0, %d)", seq, e.cfg.Slots)
	}
	if keep < 0 || keep > e.cfg.CtxPerSlot {
		return fmt.Errorf("trim to %d outside [0, %d]", keep, e.cfg.CtxPerSlot)
	}
	if !e.ctx.KvCacheSeqRm(int(seq), keep, -1) {
		return fmt.Errorf("trim sequence %d to %d: refused", seq, keep)
	}
	return nil
}

// CopySeq makes dst a copy of all of src. Each sequence has its own KV
// buffer here, and llama.cpp aborts the process on a partial copy of one:
// only whole copies are made (trim afterwards). The data moves at the next
// Decode.
func (e *Engine) CopySeq(src, dst int32) error {
	if src < 0 || int(src) >= e.cfg.Slots || dst < 0 || int(dst) >= e.cfg.Slots || src == dst {
		return fmt.Errorf("copy sequence %d to %d: need two different sequences in [0, %d)", src, dst, e.cfg.Slots)
	}
	e.ctx.KvCacheSeqCp(int(src), int(dst), -1, -1)
	return nil
}

// Close frees the batch and the model's weights. The wrapper has no call
// that frees a context, so its KV buffers stay until the process exits;
// the Engine must not be used after Close. Idempotent.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		if e.batch != nil {
			e.batch.Free()
		}
		if e.model != nil {
			llama.FreeModel(e.model)
		}
	})
}
