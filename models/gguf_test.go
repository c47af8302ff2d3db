package models_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nextact/nextact/models"
)

func TestInspectGenerated(t *testing.T) {
	t.Parallel()
	small := models.DefaultSpec()
	small.Name, small.Seed = "small", 7
	small.EmbeddingLength, small.HeadCount, small.HeadCountKV = 64, 2, 1
	small.BlockCount, small.FeedForwardLength, small.ContextLength = 2, 128, 2048
	small.Merges, small.ExtraTokens = 40, 300
	tests := []struct {
		name string
		spec models.Spec
	}{
		{"default", models.DefaultSpec()},
		{"small", small},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := tt.spec
			path := generate(t, s)
			got, err := models.Inspect(path)
			if err != nil {
				t.Fatalf("Inspect: %v", err)
			}
			want := models.Info{
				Path:              path,
				Name:              s.Name,
				Architecture:      "llama",
				ContextLength:     s.ContextLength,
				VocabSize:         256 + s.Merges + s.ExtraTokens + 11,
				EmbeddingLength:   s.EmbeddingLength,
				FeedForwardLength: s.FeedForwardLength,
				BlockCount:        s.BlockCount,
				HeadCount:         s.HeadCount,
				HeadCountKV:       s.HeadCountKV,
				KeyLength:         s.EmbeddingLength / s.HeadCount,
				ValueLength:       s.EmbeddingLength / s.HeadCount,
				ChatTemplate:      got.ChatTemplate,
				FileType:          "Q8_0",
				Weights:           generatedWeights(s, 256+s.Merges+s.ExtraTokens+11),
				Parameters:        generatedParameters(s, 256+s.Merges+s.ExtraTokens+11),
			}
			if got != want {
				t.Errorf("Inspect =\n%+v\nwant\n%+v", got, want)
			}
			// K and V, f16, per KV head, per layer.
			wantKV := int64(s.BlockCount * s.HeadCountKV * 2 * (s.EmbeddingLength / s.HeadCount) * 2)
			if kv := got.KVBytesPerToken(); kv != wantKV {
				t.Errorf("KVBytesPerToken = %d, want %d", kv, wantKV)
			}
			if f, err := models.DetectChatFormat(got.ChatTemplate); f != models.FormatLlama3 {
				t.Errorf("template detected as %q, %v; want llama3", f, err)
			}
		})
	}
}

func TestInspectErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noArch := write("noarch.gguf", noArchGGUF())

	tests := []struct {
		name   string
		path   string
		want   string
		target error
	}{
		{"missing", filepath.Join(dir, "missing.gguf"), "open gguf", fs.ErrNotExist},
		{"empty", write("empty.gguf", nil), "not a GGUF file", nil},
		{"text", write("notes.txt", []byte("hello, this is not a model")), "not a GGUF file", nil},
		{"truncated", write("trunc.gguf", []byte("GGUF\x03\x00\x00\x00\x01")), "malformed GGUF", nil},
		{"no architecture", noArch, "no general.architecture", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := models.Inspect(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Inspect error = %v, want one containing %q", err, tt.want)
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Errorf("error %v is not %v", err, tt.target)
			}
		})
	}
}

// noArchGGUF is a GGUF v3 file with one key, general.name, and no tensors.
func noArchGGUF() []byte {
	b := []byte("GGUF")
	b = append(b, 3, 0, 0, 0)             // version
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // tensors
	b = append(b, 1, 0, 0, 0, 0, 0, 0, 0) // key-values
	b = append(b, 12, 0, 0, 0, 0, 0, 0, 0)
	b = append(b, "general.name"...)
	b = append(b, 8, 0, 0, 0) // string
	b = append(b, 1, 0, 0, 0, 0, 0, 0, 0)
	return append(b, 'x')
}

// generatedWeights is the tensor data of the model Generate writes for s:
// Q8_0 matrices (34 bytes per 32 values) and f32 norms.
func generatedWeights(s models.Spec, vocab int) models.WeightBytes {
	q8 := func(ne0, ne1 int) int64 { return int64(ne1) * int64(ne0/32*34) }
	embd, ff := s.EmbeddingLength, s.FeedForwardLength
	kvDim := s.HeadCountKV * (embd / s.HeadCount)
	layer := 2*int64(embd)*4 + 2*q8(embd, embd) + 2*q8(embd, kvDim) + 2*q8(embd, ff) + q8(ff, embd)
	return models.WeightBytes{
		Input:  q8(embd, vocab),
		Layers: int64(s.BlockCount) * layer,
		Output: q8(embd, vocab) + int64(embd)*4,
	}
}

// generatedParameters counts the values of the model Generate writes.
func generatedParameters(s models.Spec, vocab int) int64 {
	embd, ff := int64(s.EmbeddingLength), int64(s.FeedForwardLength)
	kvDim := int64(s.HeadCountKV) * (embd / int64(s.HeadCount))
	layer := 2*embd + 2*embd*embd + 2*embd*kvDim + 3*embd*ff
	return 2*embd*int64(vocab) + embd + int64(s.BlockCount)*layer
}
