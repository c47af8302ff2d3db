package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/nextact/nextact/models"
)

// runGenModel writes a seeded random-weight GGUF (for benchmarks and tests
// on bigger models than the embedded one; nothing is downloaded).
func runGenModel(args []string, stdout, stderr io.Writer) int {
	s := models.DefaultSpec()
	var out string
	fs := flag.NewFlagSet("gen-model", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&out, "out", "", "where to write the GGUF (required)")
	fs.Int64Var(&s.Seed, "seed", s.Seed, "weights seed")
	fs.StringVar(&s.Name, "name", "nextact-gen", "general.name: the model id in the API")
	fs.IntVar(&s.EmbeddingLength, "embd", s.EmbeddingLength, "embedding length (a multiple of 32)")
	fs.IntVar(&s.BlockCount, "layers", s.BlockCount, "transformer blocks")
	fs.IntVar(&s.HeadCount, "heads", s.HeadCount, "attention heads")
	fs.IntVar(&s.HeadCountKV, "kv-heads", s.HeadCountKV, "key/value heads")
	fs.IntVar(&s.FeedForwardLength, "ffn", s.FeedForwardLength, "feed-forward length (a multiple of 32)")
	fs.IntVar(&s.ContextLength, "ctx", s.ContextLength, "trained context length")
	fs.IntVar(&s.Merges, "merges", s.Merges, "BPE merges learned on the built-in corpus")
	fs.IntVar(&s.ExtraTokens, "extra-tokens", 0, "filler tokens that grow the vocabulary (128256-779 gives Llama 3's size)")
	var tokJSON, tokConfig, tokPre string
	fs.StringVar(&tokJSON, "tokenizer-json", "", "a Hugging Face tokenizer.json (byte-level BPE): the model takes its vocabulary, merges and pre-tokenizer instead of the built-in ones (--merges and --extra-tokens unused)")
	fs.StringVar(&tokConfig, "tokenizer-config", "", "tokenizer_config.json for the special tokens and chat template (default: the one beside --tokenizer-json, if any)")
	fs.StringVar(&tokPre, "tokenizer-pre", "", "llama.cpp's pre-tokenizer name (default: detected from tokenizer.json: llama-bpe, qwen2 or gpt-2)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "nextact gen-model: --out is required and takes no arguments")
		return 2
	}
	if tokJSON == "" && (tokConfig != "" || tokPre != "") {
		fmt.Fprintln(stderr, "nextact gen-model: --tokenizer-config and --tokenizer-pre need --tokenizer-json")
		return 2
	}
	vocab := "built-in vocabulary"
	var err error
	if tokJSON == "" {
		err = models.Generate(out, s)
	} else {
		if tokConfig == "" {
			tokConfig = models.TokenizerConfigBeside(tokJSON)
		}
		var tok *models.GGUFTokenizer
		if tok, err = models.ReadTokenizer(tokJSON, tokConfig, tokPre); err == nil {
			err = models.GenerateWithTokenizer(out, s, tok)
			vocab = fmt.Sprintf("%d tokens from %s, pre-tokenizer %s", len(tok.Tokens), tokJSON, tok.Pre)
			if tok.ChatTemplate == "" {
				vocab += ", no chat template"
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "nextact gen-model:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s (%s: embd %d, %d layers, %d heads; %s)\n", out, s.Name, s.EmbeddingLength, s.BlockCount, s.HeadCount, vocab)
	return 0
}
