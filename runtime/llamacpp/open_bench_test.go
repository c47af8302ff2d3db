package llamacpp_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// BenchmarkOpenClose is a model's load and unload as the registry does
// them (Inspect, llama.cpp's load, the context of slots × ctx, the
// vocabulary cache; then Close), for the embedded model, a 128,256-token
// Llama-3 vocabulary (when NEXTACT_TEST_NODE_MODULES has it) and a
// larger generated model (embd 1024, 8 layers, 49 MB).
func BenchmarkOpenClose(b *testing.B) {
	larger := filepath.Join(tempRoot, "larger.gguf")
	s := models.DefaultSpec()
	s.Name, s.EmbeddingLength, s.BlockCount, s.HeadCount, s.HeadCountKV, s.FeedForwardLength = "larger", 1024, 8, 16, 4, 2816
	if err := models.Generate(larger, s); err != nil {
		b.Fatal(err)
	}
	paths := map[string]string{"embedded": testModel(b), "larger": larger}
	if os.Getenv(nodeModulesEnv) != "" {
		paths["llama3-vocab"] = llama3Model(b)
	}
	for _, name := range []string{"embedded", "llama3-vocab", "larger"} {
		path, ok := paths[name]
		if !ok {
			continue
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				e, err := llamacpp.Open(llamacpp.Config{ModelPath: path, Slots: 8, CtxPerSlot: 4096, StepTokens: 512, Threads: 1}, nil)
				if err != nil {
					b.Fatal(err)
				}
				e.Close()
			}
		})
	}
}
