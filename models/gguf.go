package models

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ollama/ollama/fs/ggml"
)

// Info describes a GGUF model file.
type Info struct {
	Path string
	// Name is general.name, else the file's base name without .gguf.
	Name         string
	Architecture string
	// ContextLength is the trained context ({arch}.context_length).
	ContextLength int
	// VocabSize is the number of tokens in tokenizer.ggml.tokens.
	VocabSize       int
	EmbeddingLength int
	// FeedForwardLength is {arch}.feed_forward_length (0 when absent).
	FeedForwardLength int
	BlockCount        int
	HeadCount         int
	// HeadCountKV is attention.head_count_kv (HeadCount when absent).
	HeadCountKV int
	// KeyLength and ValueLength are the per-head sizes of K and V
	// (attention.key_length / value_length; EmbeddingLength/HeadCount when
	// absent).
	KeyLength, ValueLength int
	// ChatTemplate is tokenizer.chat_template; it may be empty.
	ChatTemplate string
	// FileType is the weights' type, e.g. "Q8_0" ("" when not recorded).
	FileType string
	// Weights is the size of the tensor data, by where llama.cpp places
	// it (Estimate turns it into memory).
	Weights WeightBytes
	// Parameters is the number of values of every tensor.
	Parameters int64
}

// Inspect reads the metadata of the GGUF file at path, after checking the
// whole file's structure (see checkGGUF): a malformed file is an error
// here, before llama.cpp ever reads it.
func Inspect(path string) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, fmt.Errorf("open gguf: %w", err)
	}
	defer f.Close()

	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || !bytes.Equal(magic[:], []byte("GGUF")) {
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return Info{}, fmt.Errorf("read gguf %s: %w", path, err)
		}
		return Info{}, fmt.Errorf("inspect %s: not a GGUF file", path)
	}
	st, err := f.Stat()
	if err != nil {
		return Info{}, fmt.Errorf("read gguf %s: %w", path, err)
	}
	// Checked before any reader that trusts its lengths (ggml.Decode
	// allocates what the file claims) and before llama.cpp, which aborts
	// on some malformed files.
	if err := checkGGUF(f, st.Size()); err != nil {
		return Info{}, fmt.Errorf("inspect %s: malformed GGUF: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Info{}, fmt.Errorf("read gguf %s: %w", path, err)
	}
	// -1 collects every array, so the tokens array can be counted.
	g, err := ggml.Decode(f, -1)
	if err != nil {
		return Info{}, fmt.Errorf("decode gguf %s: %w", path, err)
	}
	kv := g.KV()
	arch, _ := kv["general.architecture"].(string)
	if arch == "" {
		return Info{}, fmt.Errorf("inspect %s: no general.architecture", path)
	}
	info := Info{
		Path:              path,
		Name:              kv.String("general.name"),
		Architecture:      arch,
		ContextLength:     kvInt(kv, arch, "context_length"),
		VocabSize:         len(kv.Strings("tokenizer.ggml.tokens")),
		EmbeddingLength:   kvInt(kv, arch, "embedding_length"),
		FeedForwardLength: kvInt(kv, arch, "feed_forward_length"),
		BlockCount:        kvInt(kv, arch, "block_count"),
		HeadCount:         kvInt(kv, arch, "attention.head_count"),
		ChatTemplate:      kv.String("tokenizer.chat_template"),
		Weights:           weightBytes(g.Tensors().Items()),
	}
	for _, t := range g.Tensors().Items() {
		info.Parameters += int64(t.Elements())
	}
	if info.Name == "" {
		info.Name = strings.TrimSuffix(filepath.Base(path), ".gguf")
	}
	info.HeadCountKV = kvInt(kv, arch, "attention.head_count_kv")
	if info.HeadCountKV == 0 {
		info.HeadCountKV = info.HeadCount
	}
	info.KeyLength = kvInt(kv, arch, "attention.key_length")
	info.ValueLength = kvInt(kv, arch, "attention.value_length")
	if info.HeadCount > 0 {
		if info.KeyLength == 0 {
			info.KeyLength = info.EmbeddingLength / info.HeadCount
		}
		if info.ValueLength == 0 {
			info.ValueLength = info.EmbeddingLength / info.HeadCount
		}
	}
	if t, ok := kv["general.file_type"].(uint32); ok {
		info.FileType = ggml.FileType(t).String()
	}
	return info, nil
}

// kvCacheElemBytes is the size of one K or V element: llama.cpp's default
// cache type, f16, which nextact does not change.
const kvCacheElemBytes = 2

// KVBytesPerToken is the KV cache memory one token of one sequence takes:
// every layer's K and V for the KV heads, in f16. Zero when the metadata
// does not say.
func (i Info) KVBytesPerToken() int64 {
	return int64(i.BlockCount) * int64(i.HeadCountKV) * int64(i.KeyLength+i.ValueLength) * kvCacheElemBytes
}

// kvInt reads the integer {arch}.{name} whatever its integer type; a
// per-layer array gives its largest value.
func kvInt(kv ggml.KV, arch, name string) int {
	switch v := kv[arch+"."+name].(type) {
	case uint8:
		return int(v)
	case int8:
		return int(v)
	case uint16:
		return int(v)
	case int16:
		return int(v)
	case uint32:
		return int(v)
	case int32:
		return int(v)
	case uint64:
		return int(v)
	case int64:
		return int(v)
	}
	// Arrays of uint32/int32 (per-layer values); ggml adds the arch prefix.
	return int(kv.UintOrMaxArrayValue(name, 0))
}
