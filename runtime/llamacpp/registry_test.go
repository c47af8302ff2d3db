package llamacpp_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/models/catalog"
	"github.com/nextact/nextact/models/ollama/ollamatest"
	"github.com/nextact/nextact/models/registry"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// engineInstance is a registry instance holding a real engine.
type engineInstance struct{ e *llamacpp.Engine }

func (i engineInstance) Close(context.Context) error {
	i.e.Close()
	return nil
}

// nextTokens decodes prompt and then greedily n tokens, one sequence.
func nextTokens(t *testing.T, e *llamacpp.Engine, prompt string, n int) []int32 {
	t.Helper()
	toks, err := e.Tokenize(prompt, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ClearSeq(0); err != nil {
		t.Fatal(err)
	}
	var b batching.Batch
	for i, tok := range toks {
		b.Add(tok, int32(i), 0, i == len(toks)-1)
	}
	var out []int32
	for pos := len(toks); len(out) < n; pos++ {
		if err := e.Decode(&b); err != nil {
			t.Fatal(err)
		}
		logits, err := e.Logits(b.Len() - 1)
		if err != nil {
			t.Fatal(err)
		}
		next := int32(0)
		for j, v := range logits {
			if v > logits[next] {
				next = int32(j)
			}
		}
		out = append(out, next)
		b = batching.Batch{}
		b.Add(next, int32(pos), 0, true)
	}
	return out
}

// Models laid out in an Ollama store (manifests and sha256-named blobs)
// are read into specs, loaded by the registry on the real engine by their
// Ollama names, unloaded least recently used first when a third does not
// fit beside two, and answer the same after a reload.
func TestRegistryServesStoreModelsOnRealEngine(t *testing.T) {
	dir, store := filepath.Join(tempRoot, "registry"), filepath.Join(tempRoot, "registry-store")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"shopper-a:latest", "shopper-b:v2", "team/shopper-c:latest"} {
		s := models.DefaultSpec()
		s.Seed, s.Name = int64(10+i), "gen"
		s.EmbeddingLength, s.BlockCount, s.HeadCount, s.HeadCountKV, s.FeedForwardLength = 64, 2, 2, 1, 128
		path := filepath.Join(dir, fmt.Sprintf("m%d.gguf", i))
		if err := models.Generate(path, s); err != nil {
			t.Fatal(err)
		}
		if _, err := ollamatest.Write(store, name, path, map[string]any{"stop": []string{"<|eot_id|>"}}); err != nil {
			t.Fatal(err)
		}
	}
	cat, err := catalog.Build(catalog.Sources{OllamaDir: store}, catalog.Defaults{Slots: 1, Ctx: 128, StepTokens: 64, KeepAlive: registry.KeepAliveForever})
	if err != nil || len(cat.Specs) != 3 || len(cat.Problems) != 0 {
		t.Fatalf("catalog: %v, %+v", err, cat)
	}
	one := cat.Specs[0].Memory
	budget := registry.Memory{Host: 2*one.Host + one.Host/2} // two fit, not three
	var mu sync.Mutex
	opened := map[string]int{}
	loader := func(_ context.Context, s registry.Spec) (registry.Instance, error) {
		e, err := llamacpp.Open(llamacpp.Config{ModelPath: s.Path, Slots: s.Slots, CtxPerSlot: s.Ctx, StepTokens: 64, Threads: 1}, nil)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		opened[s.ID]++
		return engineInstance{e}, nil
	}
	reg, err := registry.New(registry.Config{Budget: budget}, cat.Specs, registry.Deps{Loader: loader})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := reg.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	answer := func(name string) []int32 {
		t.Helper()
		l, err := reg.Acquire(context.Background(), name)
		if err != nil {
			t.Fatalf("Acquire(%s): %v", name, err)
		}
		defer l.Release()
		return nextTokens(t, l.Instance().(engineInstance).e, "The shopper clicks", 4)
	}
	a := answer("shopper-a") // Ollama's name without :latest
	b := answer("shopper-b:v2")
	if slices.Equal(a, b) {
		t.Errorf("two models with different weights answered alike: %v", a)
	}
	answer("team/shopper-c") // a and b idle: a, the least recently used, goes
	if st, _ := reg.Get("shopper-a:latest"); st.Loaded {
		t.Error("shopper-a still loaded beside b and c over the budget")
	}
	if st, _ := reg.Get("shopper-b:v2"); !st.Loaded {
		t.Error("shopper-b unloaded though unloading a made room")
	}
	if again := answer("registry.ollama.ai/library/shopper-a:latest"); !slices.Equal(again, a) {
		t.Errorf("shopper-a after a reload: %v, before %v", again, a)
	}
	mu.Lock()
	defer mu.Unlock()
	if opened["shopper-a:latest"] != 2 || opened["shopper-b:v2"] != 1 || opened["team/shopper-c:latest"] != 1 {
		t.Errorf("loads: %v", opened)
	}
	var ime *registry.InsufficientMemoryError
	tight, err := registry.New(registry.Config{Budget: registry.Memory{Host: one.Host / 2}}, cat.Specs, registry.Deps{Loader: loader})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tight.Acquire(context.Background(), "shopper-a"); !errors.As(err, &ime) || !ime.Never {
		t.Errorf("a model over the budget: %v", err)
	}
	if err := tight.Close(context.Background()); err != nil {
		t.Error(err)
	}
}
