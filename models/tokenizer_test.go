package models_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nextact/nextact/models"
)

const llama3Regex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// tinyTokenizer is a byte-level BPE tokenizer.json as Hugging Face writes
// Llama 3's, with five tokens, two merges and three added tokens.
func tinyTokenizer() map[string]any {
	return map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 5, "content": "<|begin_of_text|>", "special": true},
			map[string]any{"id": 6, "content": "<|eot_id|>", "special": true},
			map[string]any{"id": 8, "content": "<shop>", "special": false},
		},
		"normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": llama3Regex}, "behavior": "Isolated"},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "Sequence", "processors": []any{
			map[string]any{"type": "ByteLevel"},
			map[string]any{"type": "TemplateProcessing", "single": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
			}},
		}},
		"model": map[string]any{
			"type":   "BPE",
			"vocab":  map[string]int{"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4},
			"merges": []any{"a b", []string{"Ġ", "ab"}},
		},
	}
}

func tinyConfig() map[string]any {
	return map[string]any{
		"bos_token":     "<|begin_of_text|>",
		"eos_token":     map[string]any{"content": "<|eot_id|>", "__type": "AddedToken"},
		"chat_template": []any{map[string]any{"name": "tool_use", "template": "T"}, map[string]any{"name": "default", "template": "{{ '<|start_header_id|>' }}"}},
	}
}

func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadTokenizer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tj := writeJSON(t, dir, "tokenizer.json", tinyTokenizer())
	cfg := writeJSON(t, dir, "tokenizer_config.json", tinyConfig())
	if got := models.TokenizerConfigBeside(tj); got != cfg {
		t.Errorf("TokenizerConfigBeside = %q, want %q", got, cfg)
	}
	tok, err := models.ReadTokenizer(tj, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	wantTokens := []string{"a", "b", "ab", "Ġ", "Ġab", "<|begin_of_text|>", "<|eot_id|>", "[PAD7]", "<shop>"}
	wantTypes := []int32{1, 1, 1, 1, 1, 3, 3, 5, 4}
	if !slices.Equal(tok.Tokens, wantTokens) || !slices.Equal(tok.Types, wantTypes) {
		t.Errorf("tokens %q types %v\nwant %q %v", tok.Tokens, tok.Types, wantTokens, wantTypes)
	}
	if !slices.Equal(tok.Merges, []string{"a b", "Ġ ab"}) {
		t.Errorf("merges %q", tok.Merges)
	}
	if tok.Pre != "llama-bpe" || tok.BOS != 5 || tok.EOS != 6 || !tok.AddBOS || tok.ChatTemplate != "{{ '<|start_header_id|>' }}" {
		t.Errorf("pre %q bos %d eos %d add_bos %v template %q", tok.Pre, tok.BOS, tok.EOS, tok.AddBOS, tok.ChatTemplate)
	}
	// Without a config: no special tokens, no template; --tokenizer-pre wins.
	tok, err = models.ReadTokenizer(tj, "", "qwen2")
	if err != nil || tok.BOS != -1 || tok.EOS != -1 || tok.AddBOS || tok.ChatTemplate != "" || tok.Pre != "qwen2" {
		t.Errorf("no config: %+v, %v", tok, err)
	}
}

func TestReadTokenizerRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(tj, cfg map[string]any)
		pre    string
		want   string
	}{
		{"unigram", func(tj, _ map[string]any) { tj["model"].(map[string]any)["type"] = "Unigram" }, "", "only byte-level BPE"},
		{"byte fallback", func(tj, _ map[string]any) { tj["model"].(map[string]any)["byte_fallback"] = true }, "", "SentencePiece-style"},
		{"lowercase normalizer", func(tj, _ map[string]any) { tj["normalizer"] = map[string]any{"type": "Lowercase"} }, "", `normalizer "Lowercase"`},
		{"unknown regex", func(tj, _ map[string]any) {
			tj["pre_tokenizer"].(map[string]any)["pretokenizers"].([]any)[0].(map[string]any)["pattern"] = map[string]any{"Regex": `\w+`}
		}, "", "--tokenizer-pre"},
		{"metaspace", func(tj, _ map[string]any) { tj["pre_tokenizer"] = map[string]any{"type": "Metaspace"} }, "", "ByteLevel"},
		{"bad pre name", nil, "../x", "not a llama.cpp name"},
		{"id taken twice", func(tj, _ map[string]any) {
			tj["added_tokens"] = append(tj["added_tokens"].([]any), map[string]any{"id": 2, "content": "<x>", "special": true})
		}, "", `id 2 is both`},
		{"same text twice", func(tj, _ map[string]any) {
			tj["added_tokens"] = append(tj["added_tokens"].([]any), map[string]any{"id": 9, "content": "ab", "special": true})
		}, "", `are both "ab"`},
		{"negative id", func(tj, _ map[string]any) { tj["model"].(map[string]any)["vocab"].(map[string]int)["c"] = -1 }, "", "id -1"},
		{"huge id", func(tj, _ map[string]any) { tj["model"].(map[string]any)["vocab"].(map[string]int)["c"] = 1 << 30 }, "", "outside"},
		{"merge without space", func(tj, _ map[string]any) { tj["model"].(map[string]any)["merges"] = []any{"ab"} }, "", "merge 0"},
		{"merge of three", func(tj, _ map[string]any) { tj["model"].(map[string]any)["merges"] = []any{[]string{"a", "b", "c"}} }, "", "merge 0"},
		{"space in a merge pair", func(tj, _ map[string]any) { tj["model"].(map[string]any)["merges"] = []any{[]string{"a b", "c"}} }, "", "space inside"},
		{"bos not in vocab", func(_, cfg map[string]any) { cfg["bos_token"] = "<s>" }, "", `bos_token "<s>" is not in the vocabulary`},
		{"eos of a number", func(_, cfg map[string]any) { cfg["eos_token"] = 3 }, "", "eos_token: neither"},
		{"template of a number", func(_, cfg map[string]any) { cfg["chat_template"] = 7 }, "", "chat_template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tj, cfg := tinyTokenizer(), tinyConfig()
			if tt.change != nil {
				tt.change(tj, cfg)
			}
			_, err := models.ReadTokenizer(writeJSON(t, dir, "tokenizer.json", tj), writeJSON(t, dir, "tokenizer_config.json", cfg), tt.pre)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadTokenizer error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := models.ReadTokenizer(filepath.Join(t.TempDir(), "missing.json"), "", ""); err == nil {
		t.Error("a missing tokenizer.json was read")
	}
}

// The generated model carries the tokenizer: its tokens, types, merges,
// pre-tokenizer, special tokens and template, as Inspect and ggml read them.
func TestGenerateWithTokenizer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tok, err := models.ReadTokenizer(writeJSON(t, dir, "tokenizer.json", tinyTokenizer()), writeJSON(t, dir, "c.json", tinyConfig()), "")
	if err != nil {
		t.Fatal(err)
	}
	s := models.DefaultSpec()
	s.Name, s.EmbeddingLength, s.BlockCount, s.HeadCount, s.HeadCountKV, s.FeedForwardLength = "tok", 64, 1, 2, 1, 64
	path := filepath.Join(dir, "m.gguf")
	if err := models.GenerateWithTokenizer(path, s, tok); err != nil {
		t.Fatal(err)
	}
	info, err := models.Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.VocabSize != len(tok.Tokens) || info.ChatTemplate != tok.ChatTemplate || info.Name != "tok" {
		t.Errorf("Inspect: vocab %d template %q name %q", info.VocabSize, info.ChatTemplate, info.Name)
	}
	kv := decode(t, path).KV()
	if kv.String("tokenizer.ggml.pre") != "llama-bpe" || kv.Uint("tokenizer.ggml.bos_token_id") != 5 ||
		kv.Uint("tokenizer.ggml.eos_token_id") != 6 || kv.Uint("tokenizer.ggml.eot_token_id") != 6 ||
		!kv.Bool("tokenizer.ggml.add_bos_token") || !slices.Equal(kv.Strings("tokenizer.ggml.merges"), tok.Merges) ||
		!slices.Equal(kv.Strings("tokenizer.ggml.tokens"), tok.Tokens) {
		t.Errorf("metadata: %v", kv)
	}
	if err := models.GenerateWithTokenizer(path, s, &models.GGUFTokenizer{}); err == nil {
		t.Error("an empty tokenizer was accepted")
	}
}
