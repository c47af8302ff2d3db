package models

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/ollama/ollama/fs/ggml"
)

// generatorVersion is part of EnsureDefault's file name: bump it whenever
// Generate's output changes for the same Spec.
const generatorVersion = 1

// Spec describes a seeded random Llama model with a byte-level BPE
// vocabulary and Llama-3 special tokens, quantized to Q8_0.
type Spec struct {
	Seed int64
	// Name is general.name.
	Name string
	// EmbeddingLength and FeedForwardLength must be multiples of 32 (the
	// Q8_0 block); EmbeddingLength a multiple of HeadCount, HeadCount a
	// multiple of HeadCountKV.
	EmbeddingLength, BlockCount, HeadCount, HeadCountKV, FeedForwardLength int
	// ContextLength is llama.context_length.
	ContextLength int
	// Merges is the number of BPE merges learned on the built-in corpus.
	Merges int
	// ExtraTokens pads the vocabulary with normal filler tokens
	// ("[[pad_N]]") to reach a target size; may be 0.
	ExtraTokens int
}

// DefaultSpec returns the spec of the model nextact embeds by default.
func DefaultSpec() Spec {
	return Spec{
		Seed:              1,
		Name:              "nextact-tiny",
		EmbeddingLength:   256,
		BlockCount:        4,
		HeadCount:         4,
		HeadCountKV:       2,
		FeedForwardLength: 768,
		ContextLength:     8192,
		Merges:            512,
		ExtraTokens:       0,
	}
}

func (s Spec) validate() error {
	const maxDim, maxTokens = 1 << 16, 1 << 21
	var err error
	check := func(ok bool, format string, args ...any) {
		if !ok && err == nil {
			err = fmt.Errorf("spec: "+format, args...)
		}
	}
	check(s.Name != "", "name is empty")
	check(s.EmbeddingLength > 0 && s.EmbeddingLength <= maxDim, "embedding length %d out of range (1..%d)", s.EmbeddingLength, maxDim)
	check(s.EmbeddingLength%q8Block == 0, "embedding length %d is not a multiple of %d", s.EmbeddingLength, q8Block)
	check(s.FeedForwardLength > 0 && s.FeedForwardLength <= 4*maxDim, "feed-forward length %d out of range (1..%d)", s.FeedForwardLength, 4*maxDim)
	check(s.FeedForwardLength%q8Block == 0, "feed-forward length %d is not a multiple of %d", s.FeedForwardLength, q8Block)
	check(s.BlockCount > 0 && s.BlockCount <= 1024, "block count %d out of range (1..1024)", s.BlockCount)
	check(s.HeadCount > 0 && s.EmbeddingLength%s.HeadCount == 0, "head count %d does not divide embedding length %d", s.HeadCount, s.EmbeddingLength)
	if s.HeadCount > 0 {
		check(s.EmbeddingLength/s.HeadCount%2 == 0, "head dimension %d is odd", s.EmbeddingLength/s.HeadCount)
	}
	check(s.HeadCountKV > 0 && s.HeadCount%s.HeadCountKV == 0, "kv head count %d does not divide head count %d", s.HeadCountKV, s.HeadCount)
	check(s.ContextLength > 0 && s.ContextLength <= math.MaxInt32, "context length %d out of range", s.ContextLength)
	check(s.Merges >= 0, "merges %d is negative", s.Merges)
	check(s.ExtraTokens >= 0 && s.ExtraTokens <= maxTokens, "extra tokens %d out of range (0..%d)", s.ExtraTokens, maxTokens)
	return err
}

// Generate writes the model s describes to path as a GGUF file. The output
// depends only on s; the file appears atomically (temp file and rename).
func Generate(path string, s Spec) error {
	if err := s.validate(); err != nil {
		return err
	}
	v, err := buildVocab(s.Merges, s.ExtraTokens)
	if err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	return write(path, s, v)
}

// GenerateWithTokenizer writes the model s describes with tok's
// vocabulary, merges, pre-tokenizer, special tokens and chat template
// instead of the built-in ones (s.Merges and s.ExtraTokens are unused).
// The output depends only on s and tok.
func GenerateWithTokenizer(path string, s Spec, tok *GGUFTokenizer) error {
	s.Merges, s.ExtraTokens = 0, 0
	if err := s.validate(); err != nil {
		return err
	}
	if tok == nil || len(tok.Tokens) == 0 || len(tok.Types) != len(tok.Tokens) {
		return errors.New("spec: empty tokenizer")
	}
	return write(path, s, tok.vocab())
}

// write writes the model to path atomically (temp file and rename).
func write(path string, s Spec, v *vocab) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create gguf: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := ggml.WriteGGUF(tmp, metadata(s, v), tensors(s, v)); err != nil {
		tmp.Close()
		return fmt.Errorf("write gguf: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write gguf: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write gguf: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write gguf: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write gguf: %w", err)
	}
	return nil
}

// EnsureDefault writes DefaultSpec's model to
// cacheDir/<name>-<spec hash>.gguf unless it is there, and returns its path.
// Concurrent callers, in one process or several, are safe: each writes a
// temp file and renames it into place.
func EnsureDefault(cacheDir string) (string, error) {
	s := DefaultSpec()
	path := filepath.Join(cacheDir, s.Name+"-"+specHash(s)+".gguf")
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("default model: %w", err)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("default model: %w", err)
	}
	if err := Generate(path, s); err != nil {
		return "", fmt.Errorf("default model: %w", err)
	}
	return path, nil
}

// specHash is a short hash of s and the generator version.
func specHash(s Spec) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "v%d %+v", generatorVersion, s))
	return hex.EncodeToString(sum[:6])
}

// metadata returns the GGUF key-values; ggml.WriteGGUF adds the "llama."
// prefix to keys without general./tokenizer.
func metadata(s Spec, v *vocab) ggml.KV {
	kv := ggml.KV{
		"general.architecture":         "llama",
		"general.name":                 s.Name,
		"general.file_type":            uint32(ggml.FileTypeQ8_0),
		"general.quantization_version": uint32(2),
		"general.alignment":            uint32(32),

		"context_length":                   uint32(s.ContextLength),
		"embedding_length":                 uint32(s.EmbeddingLength),
		"block_count":                      uint32(s.BlockCount),
		"feed_forward_length":              uint32(s.FeedForwardLength),
		"attention.head_count":             uint32(s.HeadCount),
		"attention.head_count_kv":          uint32(s.HeadCountKV),
		"rope.dimension_count":             uint32(s.EmbeddingLength / s.HeadCount),
		"rope.freq_base":                   float32(500000),
		"attention.layer_norm_rms_epsilon": float32(1e-5),
		"vocab_size":                       uint32(len(v.tokens)),

		"tokenizer.ggml.model":         "gpt2",
		"tokenizer.ggml.pre":           v.pre,
		"tokenizer.ggml.tokens":        v.tokens,
		"tokenizer.ggml.token_type":    v.types,
		"tokenizer.ggml.merges":        v.merges,
		"tokenizer.ggml.add_bos_token": v.addBOS,
	}
	for key, id := range map[string]int64{"bos": v.bos, "eos": v.eos, "eot": v.eot, "eom": v.eom} {
		if id >= 0 {
			kv["tokenizer.ggml."+key+"_token_id"] = uint32(id)
		}
	}
	if v.template != "" {
		kv["tokenizer.chat_template"] = v.template
	}
	return kv
}

// tensors returns the model's tensors; their data is generated while
// written, from the seed and each tensor's name.
func tensors(s Spec, v *vocab) []*ggml.Tensor {
	seed := uint64(s.Seed)
	embd, ff, nVocab := s.EmbeddingLength, s.FeedForwardLength, len(v.tokens)
	kvDim := s.HeadCountKV * (embd / s.HeadCount)
	q8 := func(name string, ne0, ne1 int, std float64) *ggml.Tensor {
		return &ggml.Tensor{
			Name: name, Kind: tensorQ8_0, Shape: []uint64{uint64(ne0), uint64(ne1)},
			WriterTo: &randomQ8{seed: seed, name: name, ne0: ne0, ne1: ne1, std: std},
		}
	}
	norm := func(name string) *ggml.Tensor {
		return &ggml.Tensor{Name: name, Kind: tensorF32, Shape: []uint64{uint64(embd)}, WriterTo: onesF32{embd}}
	}
	inStd, ffStd := 1/math.Sqrt(float64(embd)), 1/math.Sqrt(float64(ff))

	output := q8("output.weight", embd, nVocab, 3*inStd)
	output.WriterTo.(*randomQ8).rowScale = func(row int) float64 {
		if v.damp(row) {
			return 0.25
		}
		return 1
	}
	ts := []*ggml.Tensor{q8("token_embd.weight", embd, nVocab, 1), norm("output_norm.weight"), output}
	for i := range s.BlockCount {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			norm(p+"attn_norm.weight"),
			q8(p+"attn_q.weight", embd, embd, inStd),
			q8(p+"attn_k.weight", embd, kvDim, inStd),
			q8(p+"attn_v.weight", embd, kvDim, inStd),
			q8(p+"attn_output.weight", embd, embd, inStd),
			norm(p+"ffn_norm.weight"),
			q8(p+"ffn_gate.weight", embd, ff, inStd),
			q8(p+"ffn_up.weight", embd, ff, inStd),
			q8(p+"ffn_down.weight", ff, embd, ffStd),
		)
	}
	return ts
}

// llama3Template is the chat template of Meta-Llama-3-8B-Instruct.
const llama3Template = `{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}`
