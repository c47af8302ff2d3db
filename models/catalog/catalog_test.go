package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/models/catalog"
	"github.com/nextact/nextact/models/ollama"
	"github.com/nextact/nextact/models/ollama/ollamatest"
	"github.com/nextact/nextact/models/registry"
)

// gen writes a small generated model named name (general.name) into dir.
func gen(t *testing.T, dir, file, name string) string {
	t.Helper()
	s := models.DefaultSpec()
	s.Name, s.EmbeddingLength, s.BlockCount, s.HeadCount, s.HeadCountKV, s.FeedForwardLength, s.ContextLength = name, 64, 1, 2, 1, 64, 2048
	path := filepath.Join(dir, file)
	if err := models.Generate(path, s); err != nil {
		t.Fatal(err)
	}
	return path
}

// genTemplate writes a small model whose vocabulary has ChatML's markers
// and the given chat template.
func genTemplate(t *testing.T, dir, file, name, template string) string {
	t.Helper()
	tok := &models.GGUFTokenizer{
		Tokens: []string{"a", "b", "ab", "<|im_start|>", "<|im_end|>"},
		Types:  []int32{1, 1, 1, 3, 3},
		Merges: []string{"a b"}, Pre: "qwen2", BOS: -1, EOS: 4, ChatTemplate: template,
	}
	s := models.DefaultSpec()
	s.Name, s.EmbeddingLength, s.BlockCount, s.HeadCount, s.HeadCountKV, s.FeedForwardLength, s.ContextLength = name, 64, 1, 2, 1, 64, 4096
	path := filepath.Join(dir, file)
	if err := models.GenerateWithTokenizer(path, s, tok); err != nil {
		t.Fatal(err)
	}
	return path
}

const chatmlTemplate = `{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}{% endfor %}`

var defaults = catalog.Defaults{
	ActionFormat: "prompted", Slots: 4, Ctx: 1024, StepTokens: 512, GPULayers: 0, KeepAlive: registry.DefaultKeepAlive,
	CheckActionFormat: func(s string) error {
		if s != "prompted" && s != "finetuned" {
			return fmt.Errorf("unknown format %q", s)
		}
		return nil
	},
}

func build(t *testing.T, src catalog.Sources) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Build(src, defaults)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	// Whatever Build returns, the registry takes.
	reg, err := registry.New(registry.Config{}, c.Specs, registry.Deps{Loader: func(ctx context.Context, s registry.Spec) (registry.Instance, error) {
		return nil, errors.New("unused")
	}})
	if err != nil {
		t.Fatalf("registry.New of the catalog's specs: %v", err)
	}
	if err := reg.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

func ids(c *catalog.Catalog) []string {
	var out []string
	for _, s := range c.Specs {
		out = append(out, s.ID)
	}
	return out
}

func TestFlagModels(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := gen(t, dir, "a.gguf", "alpha")
	b := gen(t, dir, "b=c.gguf", "beta")
	twin := gen(t, dir, "twin.gguf", "alpha")

	// One bare --model: today's single-model server.
	c := build(t, catalog.Sources{Models: []string{a}})
	s := c.Specs[0]
	if s.ID != "alpha" || s.Path != a || !s.Preload || s.KeepAlive != registry.KeepAliveForever || s.ChatFormat != "llama3" ||
		s.Slots != 4 || s.Ctx != 1024 || s.ActionFormat != "prompted" || s.ContextLength != 2048 || s.Source != "--model" {
		t.Errorf("lone --model: %+v", s)
	}
	info, err := models.Inspect(a)
	if err != nil {
		t.Fatal(err)
	}
	if m := info.Estimate(4, 1024, 512, 0); s.Memory != (registry.Memory{GPU: m.GPU, Host: m.Host}) || s.Memory.Host <= info.Weights.Total() {
		t.Errorf("memory %+v, estimate %+v", s.Memory, m)
	}
	if st, _ := os.Stat(a); s.Details.FileSize != st.Size() || s.Details.Family != "llama" || s.Details.Quantization != "Q8_0" || s.Details.Format != "gguf" || s.Details.ParameterSize == "" {
		t.Errorf("details %+v", s.Details)
	}
	if c := build(t, catalog.Sources{Models: []string{a}, ModelID: "shopper"}); c.Specs[0].ID != "shopper" {
		t.Errorf("--model-id: %q", c.Specs[0].ID)
	}

	// Several: ID=PATH, a path holding "=", on demand with the default keep_alive.
	c = build(t, catalog.Sources{Models: []string{"first=" + a, b, "other=" + twin}})
	if got := ids(c); !slices.Equal(got, []string{"first", "beta", "other"}) {
		t.Fatalf("ids %q", got)
	}
	for _, s := range c.Specs {
		if s.Preload || s.KeepAlive != registry.DefaultKeepAlive {
			t.Errorf("%s: preload %v keep_alive %v", s.ID, s.Preload, s.KeepAlive)
		}
	}

	tests := []struct {
		name string
		src  catalog.Sources
		want string
	}{
		{"same general.name", catalog.Sources{Models: []string{a, twin}}, `model id "alpha" is given twice: by --model (` + a + `) and by --model (` + twin + `)`},
		{"model-id with two", catalog.Sources{Models: []string{a, b}, ModelID: "x"}, "--model-id"},
		{"model-id and ID=", catalog.Sources{Models: []string{"x=" + a}, ModelID: "y"}, "--model-id another"},
		{"missing", catalog.Sources{Models: []string{filepath.Join(dir, "none.gguf")}}, "no such file"},
		{"no path", catalog.Sources{Models: []string{"x="}}, "no path"},
		{"control in id", catalog.Sources{Models: []string{"a\x01b=" + a}}, "control character"},
	}
	for _, tt := range tests {
		if _, err := catalog.Build(tt.src, defaults); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	over := defaults
	over.Ctx = 4096
	if _, err := catalog.Build(catalog.Sources{Models: []string{a}}, over); err == nil || !strings.Contains(err.Error(), "trained context of 2048") {
		t.Errorf("ctx over the trained context: %v", err)
	}
	if !(catalog.Sources{}).Empty() || (catalog.Sources{ModelsDir: dir}).Empty() {
		t.Error("Empty")
	}
}

func writeManifest(t *testing.T, dir string, v any) string {
	t.Helper()
	var data []byte
	if s, ok := v.(string); ok {
		data = []byte(s)
	} else {
		var err error
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "models.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestModelsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gen(t, dir, "a.gguf", "alpha")
	genTemplate(t, dir, "q.gguf", "qwen", chatmlTemplate)
	path := writeManifest(t, dir, map[string]any{"models": []any{
		map[string]any{"id": "shopper-a", "path": "a.gguf", "action_format": "finetuned", "slots": 2, "ctx": 2048,
			"preload": true, "keep_alive": "10m", "aliases": []string{"a"},
			"sampling": map[string]any{"temperature": 0, "top_p": 0.9, "top_k": 40, "seed": 7, "max_tokens": 300, "stop": []string{"\n\n"}}},
		map[string]any{"path": "q.gguf", "keep_alive": -1},
		map[string]any{"id": "forced", "path": filepath.Join(dir, "q.gguf"), "chat_format": "mistral", "keep_alive": 0},
	}})
	c := build(t, catalog.Sources{ModelsFile: path})
	if got := ids(c); !slices.Equal(got, []string{"shopper-a", "qwen", "forced"}) {
		t.Fatalf("ids %q", got)
	}
	a, q, forced := c.Specs[0], c.Specs[1], c.Specs[2]
	sm := a.Sampling
	if a.Path != filepath.Join(dir, "a.gguf") || a.ActionFormat != "finetuned" || a.Slots != 2 || a.Ctx != 2048 || !a.Preload ||
		a.KeepAlive != 10*time.Minute || !slices.Equal(a.Aliases, []string{"a"}) || *sm.Temperature != 0 || *sm.TopP != 0.9 ||
		*sm.TopK != 40 || *sm.Seed != 7 || *sm.MaxTokens != 300 || !slices.Equal(sm.Stop, []string{"\n\n"}) || a.Source != "--models "+path {
		t.Errorf("shopper-a: %+v", a)
	}
	if q.ChatFormat != "chatml" || q.KeepAlive != registry.KeepAliveForever || q.Preload || q.Slots != 4 || q.Ctx != 1024 {
		t.Errorf("qwen: %+v", q)
	}
	if forced.ChatFormat != "mistral" || forced.KeepAlive != 0 {
		t.Errorf("forced: %+v", forced)
	}

	tests := []struct {
		name     string
		manifest any
		want     string
	}{
		{"unknown field", `{"models":[{"path":"a.gguf","temprature":0}]}`, `unknown field "temprature"`},
		{"unknown sampling field", `{"models":[{"path":"a.gguf","sampling":{"min_p":0.1}}]}`, `unknown field "min_p"`},
		{"two values", `{"models":[{"path":"a.gguf"}]} {}`, "more than one JSON value"},
		{"no models", `{"models":[]}`, "lists 0 models"},
		{"not json", `models: [a.gguf]`, "invalid character"},
		{"path and ollama", `{"models":[{"path":"a.gguf","ollama":"x"}]}`, "not both"},
		{"neither", `{"models":[{"id":"x"}]}`, `no "path" nor "ollama"`},
		{"ollama without a store", `{"models":[{"ollama":"llama3.2:1b"}]}`, "no Ollama store"},
		{"bad chat format", `{"models":[{"path":"a.gguf","chat_format":"gemma"}]}`, "unknown chat format"},
		{"bad action format", `{"models":[{"path":"a.gguf","action_format":"bogus"}]}`, `unknown format "bogus"`},
		{"bad keep_alive", `{"models":[{"path":"a.gguf","keep_alive":"soon"}]}`, "keep_alive"},
		{"hot", `{"models":[{"path":"a.gguf","sampling":{"temperature":3}}]}`, "temperature 3 outside"},
		{"top_p 0", `{"models":[{"path":"a.gguf","sampling":{"top_p":0}}]}`, "top_p 0 outside"},
		{"many stops", `{"models":[{"path":"a.gguf","sampling":{"stop":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"]}}]}`, "17 stop strings"},
		{"zero slots", `{"models":[{"path":"a.gguf","slots":0}]}`, "slots must be"},
		{"long ctx", `{"models":[{"path":"a.gguf","ctx":999999}]}`, "trained context"},
		{"duplicate", `{"models":[{"path":"a.gguf"},{"path":"a.gguf"}]}`, `model id "alpha" is given twice`},
	}
	for _, tt := range tests {
		sub := t.TempDir()
		if err := os.Link(filepath.Join(dir, "a.gguf"), filepath.Join(sub, "a.gguf")); err != nil {
			t.Fatal(err)
		}
		_, err := catalog.Build(catalog.Sources{ModelsFile: writeManifest(t, sub, tt.manifest)}, defaults)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	big := writeManifest(t, t.TempDir(), `{"models":[]}`+strings.Repeat(" ", 1<<20))
	if _, err := catalog.Build(catalog.Sources{ModelsFile: big}, defaults); err == nil || !strings.Contains(err.Error(), "at most 1048576 bytes") {
		t.Errorf("a manifest over 1 MiB: %v", err)
	}
}

func TestModelsDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	gen(t, dir, "b.gguf", "beta")
	gen(t, dir, "A.GGUF", "alpha")
	genTemplate(t, dir, "odd.gguf", "odd", "{{ messages }}")
	if err := os.WriteFile(filepath.Join(dir, "broken.gguf"), []byte("GGUF\x03\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.gguf"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := build(t, catalog.Sources{ModelsDir: dir})
	if got := ids(c); !slices.Equal(got, []string{"alpha", "beta"}) {
		t.Errorf("ids %q", got)
	}
	var probs []string
	for _, p := range c.Problems {
		probs = append(probs, filepath.Base(p.Name)+": "+p.Err.Error())
	}
	if len(probs) != 2 || !strings.Contains(probs[0], "broken.gguf: ") || !strings.Contains(probs[1], "odd.gguf: chat template not recognised") {
		t.Errorf("problems %q", probs)
	}
	gen(t, dir, "c.gguf", "beta")
	_, err := catalog.Build(catalog.Sources{ModelsDir: dir}, defaults)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b.gguf")) || !strings.Contains(err.Error(), filepath.Join(dir, "c.gguf")) {
		t.Errorf("duplicate general.name in a folder: %v", err)
	}
	if _, err := catalog.Build(catalog.Sources{ModelsDir: filepath.Join(dir, "none")}, defaults); err == nil {
		t.Error("a missing --models-dir was accepted")
	}
}

// An Ollama store's models are served by their Ollama names, with their
// params layer's stop strings and sampling; the ones nextact cannot serve
// are problems for them alone.
func TestOllamaStore(t *testing.T) {
	t.Parallel()
	dir, store := t.TempDir(), t.TempDir()
	a := gen(t, dir, "a.gguf", "alpha")
	mustWrite := func(name string, params map[string]any, extra ...ollamatest.Layer) ollamatest.Manifest {
		mf, err := ollamatest.Write(store, name, a, params, extra...)
		if err != nil {
			t.Fatal(err)
		}
		return mf
	}
	mf := mustWrite("shopper-ft:latest", map[string]any{"stop": []string{"<|eot_id|>"}, "temperature": 0.3, "num_ctx": 100000, "num_predict": -1},
		ollamatest.Layer{MediaType: ollama.MediaSystem, Data: []byte("You shop.")})
	mustWrite("llama3.2:1b", nil)
	mustWrite("with-lora:latest", nil, ollamatest.Layer{MediaType: ollama.MediaAdapter, Data: []byte("GGUF")})
	mustWrite("vision:latest", nil, ollamatest.Layer{MediaType: ollama.MediaProjector, Data: []byte("GGUF")})

	c := build(t, catalog.Sources{OllamaDir: store})
	if got := ids(c); !slices.Equal(got, []string{"llama3.2:1b", "shopper-ft:latest"}) {
		t.Fatalf("ids %q", got)
	}
	s := c.Specs[1]
	if s.Path != mf.Layers[0].Path || s.ChatFormat != "llama3" || s.Ctx != 2048 || *s.Sampling.Temperature != 0.3 ||
		!slices.Equal(s.Sampling.Stop, []string{"<|eot_id|>"}) || s.Sampling.MaxTokens != nil ||
		!slices.Equal(s.Aliases, []string{"registry.ollama.ai/library/shopper-ft:latest", "shopper-ft"}) ||
		s.Details.System != "You shop." || len(s.Details.Digest) != 64 || s.Details.ParameterSize != "tiny" || s.Details.Parameters["temperature"] == nil {
		t.Errorf("shopper-ft: %+v", s)
	}
	var probs []string
	for _, p := range c.Problems {
		probs = append(probs, p.Error())
	}
	if len(probs) != 2 || !strings.Contains(probs[0], "vision:latest: ") || !strings.Contains(probs[0], "vision projector") ||
		!strings.Contains(probs[1], "with-lora:latest") || !strings.Contains(probs[1], "LoRA adapter") {
		t.Errorf("problems %q", probs)
	}

	// A manifest entry takes a store model with its own settings; the
	// store does not list it again; its Ollama names still resolve.
	path := writeManifest(t, dir, `{"models":[{"id":"shop","ollama":"shopper-ft","slots":1,"sampling":{"temperature":0}}]}`)
	c = build(t, catalog.Sources{ModelsFile: path, OllamaDir: store})
	if got := ids(c); !slices.Equal(got, []string{"shop", "llama3.2:1b"}) {
		t.Fatalf("ids %q", got)
	}
	if s := c.Specs[0]; s.Slots != 1 || *s.Sampling.Temperature != 0 || !slices.Equal(s.Sampling.Stop, []string{"<|eot_id|>"}) ||
		!slices.Contains(s.Aliases, "shopper-ft:latest") {
		t.Errorf("shop: %+v", s)
	}

	// A --model whose id is an Ollama model's alias keeps the name; the
	// alias is dropped.
	c = build(t, catalog.Sources{Models: []string{"shopper-ft=" + a}, OllamaDir: store})
	if s := c.Specs[2]; s.ID != "shopper-ft:latest" || slices.Contains(s.Aliases, "shopper-ft") {
		t.Errorf("alias collision: %+v", s)
	}
	if _, err := catalog.Build(catalog.Sources{OllamaDir: filepath.Join(dir, "none")}, defaults); err == nil {
		t.Error("a missing store was accepted")
	}
}

// The default Ollama store (found, not named) is served beside a lone
// --model without changing that model's behaviour (loaded at start, never
// unloaded), and one that cannot be opened is a problem, not an error.
func TestDefaultOllamaStore(t *testing.T) {
	t.Parallel()
	dir, store := t.TempDir(), t.TempDir()
	a := gen(t, dir, "a.gguf", "alpha")
	if _, err := ollamatest.Write(store, "shopper-ft:latest", a, nil); err != nil {
		t.Fatal(err)
	}
	c := build(t, catalog.Sources{Models: []string{a}, OllamaDir: store, OllamaDefault: true})
	if got := ids(c); len(got) != 2 || got[0] != "alpha" || got[1] != "shopper-ft:latest" {
		t.Fatalf("specs %v", got)
	}
	if s := c.Specs[0]; !s.Preload || s.KeepAlive != registry.KeepAliveForever {
		t.Errorf("the lone --model beside the default store: preload %v keep_alive %v", s.Preload, s.KeepAlive)
	}
	if !(catalog.Sources{OllamaDir: store, OllamaDefault: true}).Empty() {
		t.Error("the default store alone counts as a source: the embedded model would not be served")
	}
	c = build(t, catalog.Sources{Models: []string{a}, OllamaDir: filepath.Join(dir, "missing"), OllamaDefault: true})
	if len(c.Specs) != 1 || len(c.Problems) != 1 {
		t.Errorf("an unreadable default store: %v, problems %v", ids(c), c.Problems)
	}
	if _, err := catalog.Build(catalog.Sources{OllamaDir: filepath.Join(dir, "missing")}, defaults); err == nil {
		t.Error("an unreadable --ollama-models store is no error")
	}
}
