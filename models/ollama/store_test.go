package ollama_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/models/ollama"
	"github.com/nextact/nextact/models/ollama/ollamatest"
)

var (
	ggufOnce sync.Once
	ggufPath string
	ggufErr  error
	ggufDir  string
)

// smallGGUF generates a small model once for the package's tests.
func smallGGUF(t *testing.T) string {
	t.Helper()
	ggufOnce.Do(func() {
		ggufDir, ggufErr = os.MkdirTemp("", "ollama-store-test")
		if ggufErr != nil {
			return
		}
		s := models.DefaultSpec()
		s.Name, s.EmbeddingLength, s.BlockCount, s.HeadCount, s.HeadCountKV, s.FeedForwardLength = "store-test", 64, 1, 2, 1, 64
		ggufPath = filepath.Join(ggufDir, "m.gguf")
		ggufErr = models.Generate(ggufPath, s)
	})
	if ggufErr != nil {
		t.Fatal(ggufErr)
	}
	return ggufPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if ggufDir != "" {
		_ = os.RemoveAll(ggufDir)
	}
	os.Exit(code)
}

func write(t *testing.T, dir, name string, params map[string]any, extra ...ollamatest.Layer) ollamatest.Manifest {
	t.Helper()
	mf, err := ollamatest.Write(dir, name, smallGGUF(t), params, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

func sha256Hex(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// A store laid out as Ollama writes it serves its models by their Ollama
// names: the model layer's blob (named by its real sha256), the stop
// strings and sampling defaults of the params layer, the template and
// system layers.
func TestStoreModel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	params := map[string]any{"stop": []string{"<|eot_id|>", "<|start_header_id|>"}, "temperature": 0.2, "top_k": 20, "num_ctx": 4096, "repeat_penalty": 1.1, "min_p": 0.05}
	mf := write(t, dir, "shopper-ft:latest", params,
		ollamatest.Layer{MediaType: ollama.MediaTemplate, Data: []byte("{{ .Prompt }}")},
		ollamatest.Layer{MediaType: ollama.MediaSystem, Data: []byte("You are a shopper.")},
		ollamatest.Layer{MediaType: ollama.MediaLicense, Data: []byte("license text")},
		ollamatest.Layer{MediaType: "application/x-nextact-unrelated", Data: []byte("ignored")},
	)
	s, err := ollama.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"shopper-ft", "shopper-ft:latest", "library/shopper-ft:latest", "registry.ollama.ai/library/shopper-ft:latest"} {
		m, err := s.Model(name)
		if err != nil {
			t.Fatalf("Model(%q): %v", name, err)
		}
		if m.Name != "registry.ollama.ai/library/shopper-ft:latest" || m.ShortName != "shopper-ft:latest" {
			t.Errorf("%q: names %q, %q", name, m.Name, m.ShortName)
		}
	}
	m, err := s.Model("shopper-ft")
	if err != nil {
		t.Fatal(err)
	}
	if m.GGUF.Path != mf.Layers[0].Path || filepath.Base(m.GGUF.Path) != "sha256-"+sha256Hex(t, smallGGUF(t)) {
		t.Errorf("model blob %s, want the GGUF's sha256 name", m.GGUF.Path)
	}
	if st, _ := os.Stat(smallGGUF(t)); m.GGUF.Size != st.Size() {
		t.Errorf("GGUF size %d, want %d", m.GGUF.Size, st.Size())
	}
	if m.Digest != sha256Hex(t, mf.Path) {
		t.Errorf("digest %s is not the manifest's sha256", m.Digest)
	}
	p := m.Params
	if !slices.Equal(p.Stop, []string{"<|eot_id|>", "<|start_header_id|>"}) || p.Temperature == nil || *p.Temperature != 0.2 ||
		p.TopK == nil || *p.TopK != 20 || p.NumCtx == nil || *p.NumCtx != 4096 || p.TopP != nil || p.Seed != nil {
		t.Errorf("params %+v", p)
	}
	if !slices.Equal(p.Ignored, []string{"min_p", "repeat_penalty"}) || len(p.Raw) != 6 {
		t.Errorf("ignored %q, raw %d", p.Ignored, len(p.Raw))
	}
	if m.Template != "{{ .Prompt }}" || m.System != "You are a shopper." || m.Config.ModelFormat != "gguf" || m.Config.FileType != "Q8_0" {
		t.Errorf("template %q system %q config %+v", m.Template, m.System, m.Config)
	}
	var total int64
	for _, l := range mf.Layers {
		total += l.Size
	}
	if m.Size <= total { // plus the config blob
		t.Errorf("size %d, want more than the layers' %d", m.Size, total)
	}
	// The blob is a GGUF file models.Inspect reads like any other.
	if info, err := models.Inspect(m.GGUF.Path); err != nil || info.Name != "store-test" {
		t.Errorf("Inspect(blob) = %+v, %v", info, err)
	}
}

func TestStoreNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, n := range []string{"llama3.2:1b", "myuser/other:v2", "localhost:5000/team/m:tag"} {
		write(t, dir, n, nil)
	}
	s, err := ollama.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, short, full string }{
		{"llama3.2:1b", "llama3.2:1b", "registry.ollama.ai/library/llama3.2:1b"},
		{"myuser/other:v2", "myuser/other:v2", "registry.ollama.ai/myuser/other:v2"},
		{"localhost:5000/team/m:tag", "localhost:5000/team/m:tag", "localhost:5000/team/m:tag"},
	}
	for _, tt := range tests {
		m, err := s.Model(tt.name)
		if err != nil || m.ShortName != tt.short || m.Name != tt.full {
			t.Errorf("Model(%q) = %v, %v; want %q, %q", tt.name, m, err, tt.short, tt.full)
		}
	}
	_, err = s.Model("llama3.2") // the tag defaults to latest, which is not there
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "llama3.2:latest") {
		t.Errorf("a missing tag: %v", err)
	}
	for _, bad := range []string{"", "bad name", "a/b/c/d/e:f", "x:" + strings.Repeat("t", 81), strings.Repeat("m", 600)} {
		if _, err := s.Model(bad); err == nil {
			t.Errorf("Model(%.30q) accepted an invalid name", bad)
		}
	}
}

// Each model that cannot be served is an error for that model alone: the
// others are listed and read as usual.
func TestStoreListRefusesPerModel(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, dir, "good:latest", map[string]any{"stop": "<|eot_id|>"})
	adapter := write(t, dir, "with-adapter:latest", nil, ollamatest.Layer{MediaType: ollama.MediaAdapter, Data: []byte("GGUF lora")})
	notGGUF, err := ollamatest.WriteBytes(dir, []byte("safetensors..."))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"projector", addLayer(ollama.MediaProjector, adapter.Layers[1]), "vision projector"},
		{"tensors", func(m map[string]any) {
			m["layers"] = []any{layerJSON("application/vnd.ollama.image.tensor; name=w; dtype=F16; shape=2,2", adapter.Layers[1])}
		}, "safetensors"},
		{"unknown ollama type", addLayer("application/vnd.ollama.image.future", adapter.Layers[1]), `unknown media type "application/vnd.ollama.image.future"`},
		{"two models", addLayer(ollama.MediaModel, adapter.Layers[0]), "a second model layer"},
		{"size mismatch", setModel("size", 12), "the manifest says 12"},
		{"missing blob", setModel("digest", "sha256:"+strings.Repeat("0", 64)), "no such file"},
		{"bad digest", setModel("digest", "sha256:../../etc/passwd"), "not sha256"},
		{"not gguf", func(m map[string]any) { m["layers"] = []any{layerJSON(ollama.MediaModel, notGGUF)} }, "not a GGUF file"},
		{"no model layer", func(m map[string]any) { m["layers"] = []any{} }, "no GGUF model layer"},
		{"too many layers", func(m map[string]any) {
			ls := make([]any, 1025)
			for i := range ls {
				ls[i] = layerJSON(ollama.MediaLicense, adapter.Layers[1])
			}
			m["layers"] = ls
		}, "1025 layers"},
	}
	for _, tt := range tests {
		mf := write(t, dir, strings.ReplaceAll(tt.name, " ", "-")+":latest", nil)
		editManifest(t, mf.Path, tt.edit)
	}
	badParams := []struct{ name, want string }{}
	for _, p := range []struct {
		name   string
		params map[string]any
		want   string
	}{
		{"hot", map[string]any{"temperature": "hot"}, "temperature: not a number"},
		{"too-hot", map[string]any{"temperature": 7}, "temperature: 7 outside"},
		{"many-stops", map[string]any{"stop": slices.Repeat([]string{"x"}, 17)}, "17 stop strings"},
		{"empty-stop", map[string]any{"stop": []string{""}}, "empty"},
		{"fractional-k", map[string]any{"top_k": 2.5}, "top_k: not an integer"},
	} {
		write(t, dir, p.name+":latest", p.params)
		badParams = append(badParams, struct{ name, want string }{p.name, p.want})
	}
	// A config saying the model is remote, or not GGUF.
	for _, c := range []struct{ name, key, value, want string }{
		{"remote", "remote_host", "https://ollama.com", "a remote model"},
		{"safetensors", "model_format", "safetensors", `model format "safetensors"`},
	} {
		mf := write(t, dir, c.name+":latest", nil)
		cfg, err := ollamatest.WriteBytes(dir, fmt.Appendf(nil, `{"model_format":"gguf",%q:%q}`, c.key, c.value))
		if err != nil {
			t.Fatal(err)
		}
		editManifest(t, mf.Path, func(m map[string]any) { m["config"] = layerJSON(ollama.MediaConfig, cfg) })
		badParams = append(badParams, struct{ name, want string }{c.name, c.want})
	}
	// A manifest over 1 MiB, one that is not JSON, and a path that is not a name.
	big := write(t, dir, "big:latest", nil)
	if err := os.WriteFile(big.Path, []byte(`{"layers":[]}`+strings.Repeat(" ", 1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	garbled := write(t, dir, "garbled:latest", nil)
	if err := os.WriteFile(garbled.Path, []byte(`{"layers":`), 0o644); err != nil {
		t.Fatal(err)
	}
	badName := filepath.Join(dir, "manifests", "registry.ollama.ai", "library", "-dash", "latest")
	if err := os.MkdirAll(filepath.Dir(badName), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badName, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}

	s, err := ollama.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]ollama.Listing{}
	for _, l := range list {
		got[strings.TrimPrefix(l.Name, "registry.ollama.ai/library/")] = l
	}
	if l := got["good:latest"]; l.Err != nil || l.Model == nil || !slices.Equal(l.Model.Params.Stop, []string{"<|eot_id|>"}) {
		t.Errorf("good: %+v", l)
	}
	if l := got["with-adapter:latest"]; l.Err != nil || len(l.Model.Adapters) != 1 {
		t.Errorf("an adapter is listed, not refused: %+v", l)
	}
	wants := map[string]string{"big:latest": "more than 1048576", "garbled:latest": "manifest", "-dash:latest": "not a valid Ollama model name"}
	for _, tt := range tests {
		wants[strings.ReplaceAll(tt.name, " ", "-")+":latest"] = tt.want
	}
	for _, p := range badParams {
		wants[p.name+":latest"] = p.want
	}
	for name, want := range wants {
		l, ok := got[name]
		if !ok {
			t.Errorf("%s: not listed", name)
			continue
		}
		if l.Err == nil || !strings.Contains(l.Err.Error(), want) || l.Model != nil {
			t.Errorf("%s: error %v, want one containing %q", name, l.Err, want)
		}
	}
	if len(list) != len(wants)+2 {
		t.Errorf("%d listed, want %d", len(list), len(wants)+2)
	}
}

func layerJSON(media string, b ollama.Blob) map[string]any {
	return map[string]any{"mediaType": media, "digest": b.Digest, "size": b.Size}
}

func addLayer(media string, b ollama.Blob) func(map[string]any) {
	return func(m map[string]any) { m["layers"] = append(m["layers"].([]any), layerJSON(media, b)) }
}

func setModel(key string, v any) func(map[string]any) {
	return func(m map[string]any) { m["layers"].([]any)[0].(map[string]any)[key] = v }
}

func editManifest(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenAndDefaultDir(t *testing.T) {
	t.Parallel()
	if _, err := ollama.Open(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("Open of a missing directory succeeded")
	}
	empty, err := ollama.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if l, err := empty.List(); err != nil || len(l) != 0 {
		t.Errorf("a store without manifests/: %v, %v", l, err)
	}
	home := t.TempDir()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if d, ok := ollama.DefaultDir(getenv, home); ok {
		t.Errorf("no store: %q", d)
	}
	store := filepath.Join(home, ".ollama", "models")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	if d, ok := ollama.DefaultDir(getenv, home); !ok || d != store {
		t.Errorf("~/.ollama/models: %q, %v", d, ok)
	}
	env["OLLAMA_MODELS"] = "/srv/ollama"
	if d, ok := ollama.DefaultDir(getenv, home); !ok || d != "/srv/ollama" {
		t.Errorf("$OLLAMA_MODELS: %q, %v", d, ok)
	}
}
