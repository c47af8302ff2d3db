package models_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ollama/ollama/fs/ggml"

	"github.com/nextact/nextact/models"
)

// generate writes s to a temp dir and returns the path.
func generate(t *testing.T, s models.Spec) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.gguf")
	if err := models.Generate(path, s); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return path
}

func TestGenerateDeterministic(t *testing.T) {
	t.Parallel()
	other := models.DefaultSpec()
	other.Seed = 2
	a, err := os.ReadFile(generate(t, models.DefaultSpec()))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		spec  models.Spec
		equal bool
	}{
		{"same spec", models.DefaultSpec(), true},
		{"other seed", other, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(generate(t, tt.spec))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(a, b) != tt.equal {
				t.Errorf("files equal = %v, want %v (sizes %d, %d)", !tt.equal, tt.equal, len(a), len(b))
			}
		})
	}
}

func TestGenerateValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*models.Spec)
		want   string
	}{
		{"embedding not multiple of 32", func(s *models.Spec) { s.EmbeddingLength = 100 }, "multiple of 32"},
		{"feed-forward not multiple of 32", func(s *models.Spec) { s.FeedForwardLength = 700 }, "multiple of 32"},
		{"zero embedding", func(s *models.Spec) { s.EmbeddingLength = 0 }, "embedding length"},
		{"zero blocks", func(s *models.Spec) { s.BlockCount = 0 }, "block count"},
		{"zero heads", func(s *models.Spec) { s.HeadCount = 0 }, "head count"},
		{"heads not dividing", func(s *models.Spec) { s.HeadCount = 3 }, "head count 3"},
		{"odd head dimension", func(s *models.Spec) { s.EmbeddingLength, s.HeadCount, s.HeadCountKV = 96, 32, 32 }, "odd"},
		{"kv heads not dividing", func(s *models.Spec) { s.HeadCountKV = 3 }, "kv head count"},
		{"zero context", func(s *models.Spec) { s.ContextLength = 0 }, "context length"},
		{"negative merges", func(s *models.Spec) { s.Merges = -1 }, "merges"},
		{"too many merges", func(s *models.Spec) { s.Merges = 1_000_000 }, "merges"},
		{"negative extra", func(s *models.Spec) { s.ExtraTokens = -1 }, "extra tokens"},
		{"no name", func(s *models.Spec) { s.Name = "" }, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := models.DefaultSpec()
			tt.change(&s)
			dir := t.TempDir()
			err := models.Generate(filepath.Join(dir, "m.gguf"), s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Generate error = %v, want one containing %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("Generate left %d files behind", len(entries))
			}
		})
	}
}

func TestGenerateVocabLayout(t *testing.T) {
	t.Parallel()
	s := models.DefaultSpec()
	s.Merges, s.ExtraTokens = 100, 5
	kv := decode(t, generate(t, s)).KV()
	tokens := kv.Strings("tokenizer.ggml.tokens")
	types := kv.Ints("tokenizer.ggml.token_type")
	if want := 256 + 100 + 5 + 11; len(tokens) != want || len(types) != want {
		t.Fatalf("got %d tokens, %d types, want %d", len(tokens), len(types), want)
	}
	if n := len(kv.Strings("tokenizer.ggml.merges")); n != 100 {
		t.Errorf("got %d merges, want 100", n)
	}
	if tokens[' '] != "Ġ" || tokens['a'] != "a" || tokens['\n'] != "Ċ" {
		t.Errorf("byte tokens not GPT-2 mapped: %q %q %q", tokens[' '], tokens['a'], tokens['\n'])
	}
	ids := map[string]string{
		"tokenizer.ggml.bos_token_id": "<|begin_of_text|>",
		"tokenizer.ggml.eos_token_id": "<|eot_id|>",
		"tokenizer.ggml.eot_token_id": "<|eot_id|>",
		"tokenizer.ggml.eom_token_id": "<|eom_id|>",
	}
	for key, want := range ids {
		id := kv.Uint(key)
		if int(id) >= len(tokens) || tokens[id] != want || types[id] != 3 {
			t.Errorf("%s = %d, want the control token %s", key, id, want)
		}
	}
	if got := kv.Uint("vocab_size"); int(got) != len(tokens) {
		t.Errorf("vocab_size = %d, want %d", got, len(tokens))
	}
	if got := kv.Uint("rope.dimension_count"); got != 64 {
		t.Errorf("rope.dimension_count = %d, want 64", got)
	}
	if kv.Bool("tokenizer.ggml.add_bos_token", true) {
		t.Error("add_bos_token is true")
	}
	seen := map[string]bool{}
	for i, tok := range tokens {
		if seen[tok] {
			t.Errorf("token %d %q is a duplicate", i, tok)
		}
		seen[tok] = true
	}
}

func TestGenerateWeights(t *testing.T) {
	t.Parallel()
	s := models.DefaultSpec()
	path := generate(t, s)
	g := decode(t, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(g.Tensors().Items()); n != 3+9*s.BlockCount {
		t.Errorf("got %d tensors, want %d", n, 3+9*s.BlockCount)
	}
	tests := []struct {
		name    string
		kind    uint32
		wantStd float64
	}{
		{"token_embd.weight", 8, 1},
		{"blk.0.attn_q.weight", 8, 1 / math.Sqrt(256)},
		{"blk.3.ffn_down.weight", 8, 1 / math.Sqrt(768)},
		{"blk.1.ffn_norm.weight", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tensor := findTensor(t, g, tt.name)
			if tensor.Kind != tt.kind {
				t.Fatalf("kind = %d, want %d", tensor.Kind, tt.kind)
			}
			start := g.Tensors().Offset + tensor.Offset
			values := dequantize(tensor.Kind, data[start:start+tensor.Size()])
			if len(values) != int(tensor.Elements()) {
				t.Fatalf("%d values, want %d", len(values), tensor.Elements())
			}
			var sum, sq float64
			for _, v := range values {
				sum += v
				sq += v * v
			}
			n := float64(len(values))
			mean := sum / n
			std := math.Sqrt(sq/n - mean*mean)
			if tt.kind == 0 {
				if mean != 1 || std != 0 {
					t.Errorf("norm mean %v std %v, want ones", mean, std)
				}
				return
			}
			if math.Abs(std/tt.wantStd-1) > 0.05 || math.Abs(mean) > 0.05*tt.wantStd {
				t.Errorf("mean %v std %v, want 0 and %v", mean, std, tt.wantStd)
			}
		})
	}
}

func TestEnsureDefault(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "cache", "models")
	paths := make([]string, 4)
	var wg sync.WaitGroup
	for i := range paths {
		wg.Go(func() {
			p, err := models.EnsureDefault(dir)
			if err != nil {
				t.Errorf("EnsureDefault: %v", err)
			}
			paths[i] = p
		})
	}
	wg.Wait()
	for _, p := range paths[1:] {
		if p != paths[0] {
			t.Fatalf("paths differ: %q", paths)
		}
	}
	if !strings.HasPrefix(filepath.Base(paths[0]), "nextact-tiny-") || filepath.Ext(paths[0]) != ".gguf" {
		t.Errorf("path %q, want nextact-tiny-<hash>.gguf", paths[0])
	}
	before, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	again, err := models.EnsureDefault(dir)
	if err != nil || again != paths[0] {
		t.Fatalf("EnsureDefault again = %q, %v", again, err)
	}
	after, _ := os.Stat(again)
	if !after.ModTime().Equal(before.ModTime()) {
		t.Error("EnsureDefault rewrote an existing model")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("cache holds %d entries, want 1 (temp files left?)", len(entries))
	}
	want, _ := os.ReadFile(generate(t, models.DefaultSpec()))
	got, _ := os.ReadFile(again)
	if !bytes.Equal(got, want) {
		t.Error("cached model differs from Generate(DefaultSpec())")
	}
}

// TestGenerateLargeVocab checks a Llama-3-sized vocabulary (~128k tokens)
// stays fast to write.
func TestGenerateLargeVocab(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~70 MB")
	}
	t.Parallel()
	s := models.DefaultSpec()
	s.ExtraTokens = 128256 - 256 - s.Merges - 11
	info, err := models.Inspect(generate(t, s))
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if info.VocabSize != 128256 {
		t.Errorf("VocabSize = %d, want 128256", info.VocabSize)
	}
}

func decode(t *testing.T, path string) *ggml.GGML {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := ggml.Decode(f, -1)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return g
}

func findTensor(t *testing.T, g *ggml.GGML, name string) *ggml.Tensor {
	t.Helper()
	for _, tensor := range g.Tensors().Items() {
		if tensor.Name == name {
			return tensor
		}
	}
	t.Fatalf("no tensor %s", name)
	return nil
}

// dequantize decodes F32 (kind 0) or Q8_0 (kind 8) data.
func dequantize(kind uint32, data []byte) []float64 {
	var out []float64
	if kind == 0 {
		for i := 0; i+4 <= len(data); i += 4 {
			out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(data[i:]))))
		}
		return out
	}
	for b := 0; b+34 <= len(data); b += 34 {
		d := halfToFloat(binary.LittleEndian.Uint16(data[b:]))
		for _, q := range data[b+2 : b+34] {
			out = append(out, d*float64(int8(q)))
		}
	}
	return out
}

func halfToFloat(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, mant := int(h>>10&0x1f), float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * mant * math.Pow(2, -24)
	case 0x1f:
		return sign * math.Inf(1)
	}
	return sign * (1 + mant/1024) * math.Pow(2, float64(exp-15))
}
