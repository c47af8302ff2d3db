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
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "nextact gen-model: --out is required and takes no arguments")
		return 2
	}
	if err := models.Generate(out, s); err != nil {
		fmt.Fprintln(stderr, "nextact gen-model:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s (%s: embd %d, %d layers, %d heads)\n", out, s.Name, s.EmbeddingLength, s.BlockCount, s.HeadCount)
	return 0
}
