package catalog

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/models/ollama"
	"github.com/nextact/nextact/models/registry"
)

// File is the --models manifest, a JSON object:
//
//	{"models": [
//	  {"id": "shopper-qwen-7b", "path": "qwen2.5-7b-ft.Q8_0.gguf",
//	   "chat_format": "chatml", "action_format": "finetuned",
//	   "sampling": {"temperature": 0, "max_tokens": 512},
//	   "slots": 16, "ctx": 8192, "preload": true, "keep_alive": "10m"},
//	  {"id": "shopper-llama", "ollama": "shopper-ft:latest", "keep_alive": -1}
//	]}
//
// Each model has "path" (a GGUF; relative to the manifest's folder) or
// "ollama" (a model of the --ollama-models store, by its Ollama name);
// "id" defaults to the GGUF's general.name (file name) or the Ollama
// name. Every other field is optional and defaults to the serve flags:
// "aliases" (other names), "chat_format" (llama3, chatml, mistral;
// default: detected from the GGUF), "action_format" (prompted,
// finetuned), "sampling" (temperature, top_p, top_k, seed, max_tokens,
// stop), "slots", "ctx", "preload" (load at start; default false) and
// "keep_alive" (Ollama's: seconds or a duration string, 0 unloads when
// idle, -1 never). Unknown fields are errors. At most 1 MiB and 1024
// models.
type File struct {
	Models []entry `json:"models"`
}

// entry is one model of a manifest, and the form --model values take.
type entry struct {
	ID           string             `json:"id"`
	Path         string             `json:"path"`
	Ollama       string             `json:"ollama"`
	Aliases      []string           `json:"aliases"`
	ChatFormat   string             `json:"chat_format"`
	ActionFormat string             `json:"action_format"`
	Sampling     *registry.Sampling `json:"sampling"`
	Slots        *int               `json:"slots"`
	Ctx          *int               `json:"ctx"`
	Preload      *bool              `json:"preload"`
	KeepAliveRaw json.RawMessage    `json:"keep_alive"`
	// KeepAlive is KeepAliveRaw parsed (or set by --model).
	KeepAlive *time.Duration `json:"-"`
}

const (
	maxFileBytes = 1 << 20
	maxEntries   = 1024
	maxAliases   = 16
	maxStops     = 16
	maxStopBytes = 256
)

// file reads a --models manifest.
func (b *builder) file(path string, store *ollama.Store) error {
	source := "--models " + path
	data, err := readBounded(path, maxFileBytes)
	if err != nil {
		return fmt.Errorf("--models: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	if dec.More() {
		return fmt.Errorf("%s: more than one JSON value", source)
	}
	if len(f.Models) == 0 || len(f.Models) > maxEntries {
		return fmt.Errorf(`%s: "models" lists %d models (1 to %d)`, source, len(f.Models), maxEntries)
	}
	for i, e := range f.Models {
		if e.Path != "" && !filepath.IsAbs(e.Path) {
			e.Path = filepath.Join(filepath.Dir(path), e.Path)
		}
		if len(e.KeepAliveRaw) > 0 {
			d, err := registry.ParseKeepAlive(e.KeepAliveRaw)
			if err != nil {
				return fmt.Errorf("%s: model %d: %w", source, i, err)
			}
			e.KeepAlive = &d
		}
		s, err := b.fromEntry(e, source, store)
		if err != nil {
			name := e.ID
			if name == "" {
				name = e.Path + e.Ollama
			}
			return fmt.Errorf("%s: model %d (%s): %w", source, i, name, err)
		}
		if err := b.add(s); err != nil {
			return err
		}
	}
	return nil
}

func readBounded(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > limit {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", path, limit)
	}
	return os.ReadFile(path)
}

// fromEntry makes the spec of one model named by path or Ollama name.
func (b *builder) fromEntry(e entry, source string, store *ollama.Store) (registry.Spec, error) {
	switch {
	case e.Path != "" && e.Ollama != "":
		return registry.Spec{}, fmt.Errorf(`give "path" or "ollama", not both`)
	case e.Ollama != "":
		if store == nil {
			return registry.Spec{}, fmt.Errorf("ollama model %s: no Ollama store (--ollama-models)", e.Ollama)
		}
		m, err := store.Model(e.Ollama)
		if err != nil {
			return registry.Spec{}, err
		}
		b.ollamaTaken[m.Name] = true
		return b.fromOllama(e, m, source)
	case e.Path == "":
		return registry.Spec{}, fmt.Errorf(`no "path" nor "ollama"`)
	}
	info, err := models.Inspect(e.Path)
	if err != nil {
		return registry.Spec{}, err
	}
	if e.ID == "" {
		e.ID = info.Name
	}
	st, err := os.Stat(e.Path)
	if err != nil {
		return registry.Spec{}, err
	}
	s, err := b.spec(e, info, nil, source)
	if err != nil {
		return registry.Spec{}, err
	}
	s.Details.FileSize, s.Details.Modified = st.Size(), st.ModTime()
	return s, nil
}

// fromOllama makes the spec of a model of an Ollama store: its params
// layer's stop strings and sampling are the defaults the entry overrides.
func (b *builder) fromOllama(e entry, m *ollama.Model, source string) (registry.Spec, error) {
	if len(m.Adapters) > 0 {
		return registry.Spec{}, fmt.Errorf("ollama model %s has %d LoRA adapter layers, which nextact does not serve yet (serving the base model alone would answer as another model)", m.ShortName, len(m.Adapters))
	}
	info, err := models.Inspect(m.GGUF.Path)
	if err != nil {
		return registry.Spec{}, fmt.Errorf("ollama model %s: %w", m.ShortName, err)
	}
	if e.ID == "" {
		e.ID = m.ShortName
	}
	// Its Ollama names resolve to it too (llama3.2 for llama3.2:latest).
	names := []string{m.ShortName, m.Name}
	if short, ok := strings.CutSuffix(m.ShortName, ":latest"); ok {
		names = append(names, short)
	}
	for _, n := range names {
		if n != e.ID && !slices.Contains(e.Aliases, n) {
			e.Aliases = append(e.Aliases, n)
		}
	}
	e.Path = m.GGUF.Path
	s, err := b.spec(e, info, m, source)
	if err != nil {
		return registry.Spec{}, fmt.Errorf("ollama model %s: %w", m.ShortName, err)
	}
	d := &s.Details
	d.FileSize, d.Modified, d.Digest = m.GGUF.Size, m.Modified, m.Digest
	d.System, d.Parameters = m.System, m.Params.Raw
	if m.Config.ModelType != "" {
		d.ParameterSize = m.Config.ModelType
	}
	if m.Config.FileType != "" {
		d.Quantization = m.Config.FileType
	}
	return s, nil
}

// spec resolves an entry against the GGUF's metadata, the Ollama params
// (nil outside a store) and the defaults.
func (b *builder) spec(e entry, info models.Info, m *ollama.Model, source string) (registry.Spec, error) {
	if err := checkID(e.ID); err != nil {
		return registry.Spec{}, err
	}
	if len(e.Aliases) > maxAliases {
		return registry.Spec{}, fmt.Errorf("%d aliases, more than %d", len(e.Aliases), maxAliases)
	}
	for _, a := range e.Aliases {
		if err := checkID(a); err != nil {
			return registry.Spec{}, fmt.Errorf("alias: %w", err)
		}
	}
	s := registry.Spec{
		ID: e.ID, Aliases: e.Aliases, Path: e.Path, Source: source,
		Slots: b.d.Slots, Ctx: b.d.Ctx, KeepAlive: b.d.KeepAlive,
		ActionFormat: cmp.Or(e.ActionFormat, b.d.ActionFormat), ContextLength: info.ContextLength,
		Details: registry.Details{
			Format: "gguf", Family: info.Architecture, Quantization: info.FileType,
			ParameterSize: humanCount(info.Parameters), Template: info.ChatTemplate,
		},
	}
	format, err := chatFormat(cmp.Or(e.ChatFormat, b.d.ChatFormat), info)
	if err != nil {
		return registry.Spec{}, err
	}
	s.ChatFormat = string(format)
	if s.ActionFormat != "" && b.d.CheckActionFormat != nil {
		if err := b.d.CheckActionFormat(s.ActionFormat); err != nil {
			return registry.Spec{}, fmt.Errorf("action format: %w", err)
		}
	}
	if m != nil {
		if s.Sampling, err = ollamaSampling(m.Params); err != nil {
			return registry.Spec{}, err
		}
		if n := m.Params.NumCtx; n != nil {
			s.Ctx = max(minCtx, *n)
			if info.ContextLength > 0 {
				s.Ctx = min(s.Ctx, info.ContextLength) // a hint of the model's author
			}
		}
	}
	if e.Sampling != nil {
		s.Sampling = mergeSampling(s.Sampling, *e.Sampling)
	}
	if err := checkSampling(s.Sampling); err != nil {
		return registry.Spec{}, err
	}
	if e.Slots != nil {
		s.Slots = *e.Slots
	}
	if e.Ctx != nil {
		s.Ctx = *e.Ctx
	}
	switch {
	case s.Slots < 1 || s.Slots > maxSlots:
		return registry.Spec{}, fmt.Errorf("slots must be in [1, %d], got %d", maxSlots, s.Slots)
	case s.Ctx < minCtx:
		return registry.Spec{}, fmt.Errorf("ctx must be at least %d, got %d", minCtx, s.Ctx)
	case info.ContextLength > 0 && s.Ctx > info.ContextLength:
		return registry.Spec{}, fmt.Errorf("ctx %d exceeds the model's trained context of %d", s.Ctx, info.ContextLength)
	}
	if e.Preload != nil {
		s.Preload = *e.Preload
	}
	if e.KeepAlive != nil {
		s.KeepAlive = *e.KeepAlive
	}
	mem := info.Estimate(s.Slots, s.Ctx, max(b.d.StepTokens, s.Slots), b.d.GPULayers)
	s.Memory = registry.Memory{GPU: mem.GPU, Host: mem.Host}
	return s, nil
}

func chatFormat(name string, info models.Info) (models.ChatFormat, error) {
	if name != "" {
		return models.ParseChatFormat(name)
	}
	return models.DetectChatFormat(info.ChatTemplate)
}

// ollamaSampling turns Ollama params into sampling defaults (num_predict
// -1 and -2, no bound and fill the context, leave max_tokens unset).
func ollamaSampling(p ollama.Params) (registry.Sampling, error) {
	s := registry.Sampling{Temperature: p.Temperature, TopP: p.TopP, TopK: p.TopK, Stop: p.Stop}
	if p.Seed != nil {
		seed := int64(*p.Seed)
		s.Seed = &seed
	}
	if p.NumPredict != nil && *p.NumPredict > 0 {
		s.MaxTokens = p.NumPredict
	} else if p.NumPredict != nil && *p.NumPredict == 0 {
		return s, fmt.Errorf("num_predict 0 generates nothing")
	}
	return s, nil
}

// mergeSampling is base with every field over sets.
func mergeSampling(base, over registry.Sampling) registry.Sampling {
	if over.Temperature != nil {
		base.Temperature = over.Temperature
	}
	if over.TopP != nil {
		base.TopP = over.TopP
	}
	if over.TopK != nil {
		base.TopK = over.TopK
	}
	if over.Seed != nil {
		base.Seed = over.Seed
	}
	if over.MaxTokens != nil {
		base.MaxTokens = over.MaxTokens
	}
	if over.Stop != nil {
		base.Stop = over.Stop
	}
	return base
}

// checkSampling applies the API's own bounds to the defaults.
func checkSampling(s registry.Sampling) error {
	switch {
	case s.Temperature != nil && (math.IsNaN(*s.Temperature) || *s.Temperature < 0 || *s.Temperature > 2):
		return fmt.Errorf("sampling: temperature %v outside [0, 2]", *s.Temperature)
	case s.TopP != nil && (math.IsNaN(*s.TopP) || *s.TopP <= 0 || *s.TopP > 1):
		return fmt.Errorf("sampling: top_p %v outside (0, 1]", *s.TopP)
	case s.TopK != nil && (*s.TopK < 0 || *s.TopK > math.MaxInt32):
		return fmt.Errorf("sampling: top_k %d outside [0, %d]", *s.TopK, math.MaxInt32)
	case s.MaxTokens != nil && *s.MaxTokens < 1:
		return fmt.Errorf("sampling: max_tokens %d is not positive", *s.MaxTokens)
	case len(s.Stop) > maxStops:
		return fmt.Errorf("sampling: %d stop strings, more than %d", len(s.Stop), maxStops)
	}
	for _, stop := range s.Stop {
		if stop == "" || len(stop) > maxStopBytes {
			return fmt.Errorf("sampling: stop string %.40q empty or over %d bytes", stop, maxStopBytes)
		}
	}
	return nil
}

// humanCount writes a parameter count as Ollama shows it (1.2B, 135M).
func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return trimZero(fmt.Sprintf("%.1f", float64(n)/1e9)) + "B"
	case n >= 1e6:
		return trimZero(fmt.Sprintf("%.1f", float64(n)/1e6)) + "M"
	case n >= 1e3:
		return trimZero(fmt.Sprintf("%.1f", float64(n)/1e3)) + "K"
	}
	return fmt.Sprint(n)
}

func trimZero(s string) string { return strings.TrimSuffix(s, ".0") }
