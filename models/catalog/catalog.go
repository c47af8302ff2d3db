// Package catalog turns nextact's model options into registry specs:
// --model (repeatable, PATH or ID=PATH), --models FILE (a JSON manifest,
// see File), --models-dir DIR (every GGUF in it) and --ollama-models DIR
// (every model of an Ollama store). Every GGUF is inspected (models.Inspect:
// structure, chat template, memory estimate) before anything loads.
//
// Models named explicitly (--model, --models) must all be servable:
// anything wrong is an error. Models discovered in a folder or a store are
// served when they can be; the others are Problems for the caller to log.
// IDs are unique across every source: two models with one ID are an error
// naming both.
package catalog

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nextact/nextact/models/ollama"
	"github.com/nextact/nextact/models/registry"
)

// Sources are where the models come from.
type Sources struct {
	// Models are --model values: a GGUF path, or ID=PATH. The text before
	// the first "=" is an ID when it holds no path separator (write
	// ./a=b.gguf for a file whose name holds "=").
	Models []string
	// ModelID is --model-id: the ID of the one bare --model (an error
	// with any other number of models).
	ModelID string
	// ModelsFile is --models: a JSON manifest (File).
	ModelsFile string
	// ModelsDir is --models-dir: every *.gguf file directly in it.
	ModelsDir string
	// OllamaDir is an Ollama store to serve every model of
	// (--ollama-models; the caller resolves its default with
	// ollama.DefaultDir). Manifest entries with "ollama" read it too.
	OllamaDir string
	// OllamaDefault says OllamaDir is the default store, found rather
	// than named: it does not count as a source for Empty or for the lone
	// --model's behaviour, and a store that cannot be opened is a Problem.
	OllamaDefault bool
}

// Empty reports whether no source names a model: the caller then serves
// its default model (the embedded one) with Models set to its path.
func (s Sources) Empty() bool {
	return len(s.Models) == 0 && s.ModelsFile == "" && s.ModelsDir == "" && (s.OllamaDir == "" || s.OllamaDefault)
}

// Defaults are the per-model settings of models that do not set their own
// (the serve flags).
type Defaults struct {
	// ChatFormat is --chat-format ("" detects each model's from its GGUF
	// template); ActionFormat --action-format.
	ChatFormat, ActionFormat string
	// Slots and Ctx are --slots and --ctx.
	Slots, Ctx int
	// StepTokens and GPULayers size the memory estimate: the engine's
	// step budget, and the layers offloaded (the caller resolves -1 to
	// every layer when a GPU backend is present, else passes 0).
	StepTokens, GPULayers int
	// KeepAlive is the keep_alive of models that do not set one
	// (registry.DefaultKeepAlive is Ollama's 5m).
	KeepAlive time.Duration
	// CheckActionFormat validates an action format name
	// (nextaction.ParseFormat); nil accepts any.
	CheckActionFormat func(string) error
}

// Catalog is the specs to serve and the models found but not servable.
type Catalog struct {
	Specs    []registry.Spec
	Problems []Problem
}

// Problem is a discovered model that cannot be served.
type Problem struct {
	// Source is where it was found; Name its path or Ollama name.
	Source, Name string
	Err          error
}

func (p Problem) Error() string { return fmt.Sprintf("%s: %s: %v", p.Source, p.Name, p.Err) }

// Bounds on what Build accepts.
const (
	maxIDBytes    = 256
	maxDirEntries = 10_000
	maxSlots      = 256
	minCtx        = 16
)

// Build reads every source into specs. A lone --model with no other
// source keeps nextact's single-model behaviour: it loads at start
// (Preload) and stays loaded (KeepAliveForever).
func Build(src Sources, d Defaults) (*Catalog, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	c := &Catalog{}
	b := builder{cat: c, d: d, ids: map[string]string{}, ollamaTaken: map[string]bool{}}
	if src.ModelID != "" && len(src.Models) != 1 {
		return nil, fmt.Errorf("--model-id names the model of one --model, and %d are given", len(src.Models))
	}
	lone := len(src.Models) == 1 && src.ModelsFile == "" && src.ModelsDir == "" && (src.OllamaDir == "" || src.OllamaDefault)
	for _, v := range src.Models {
		s, err := b.flagModel(v, src.ModelID, lone)
		if err != nil {
			return nil, err
		}
		if err := b.add(s); err != nil {
			return nil, err
		}
	}
	var store *ollama.Store
	if src.OllamaDir != "" {
		var err error
		if store, err = ollama.Open(src.OllamaDir); err != nil && src.OllamaDefault {
			c.Problems = append(c.Problems, Problem{Source: "ollama store", Name: src.OllamaDir, Err: err})
			store = nil
		} else if err != nil {
			return nil, fmt.Errorf("--ollama-models: %w", err)
		}
	}
	if src.ModelsFile != "" {
		if err := b.file(src.ModelsFile, store); err != nil {
			return nil, err
		}
	}
	if src.ModelsDir != "" {
		if err := b.dir(src.ModelsDir); err != nil {
			return nil, err
		}
	}
	if store != nil {
		if err := b.store(store); err != nil {
			return nil, err
		}
	}
	b.dropCollidingAliases()
	return c, nil
}

func (d Defaults) check() error {
	switch {
	case d.Slots < 1 || d.Slots > maxSlots:
		return fmt.Errorf("slots must be in [1, %d], got %d", maxSlots, d.Slots)
	case d.Ctx < minCtx:
		return fmt.Errorf("ctx must be at least %d, got %d", minCtx, d.Ctx)
	case d.StepTokens < 1:
		return fmt.Errorf("step tokens must be at least 1, got %d", d.StepTokens)
	}
	return nil
}

type builder struct {
	cat *Catalog
	d   Defaults
	// ids maps every ID to its source, for duplicate errors.
	ids map[string]string
	// ollamaTaken are the store models manifest entries serve (full names).
	ollamaTaken map[string]bool
}

// add appends a spec, refusing a second model with its ID.
func (b *builder) add(s registry.Spec) error {
	where := s.Source + " (" + s.Path + ")"
	if prev, dup := b.ids[s.ID]; dup {
		return fmt.Errorf("model id %q is given twice: by %s and by %s", s.ID, prev, where)
	}
	b.ids[s.ID] = where
	b.cat.Specs = append(b.cat.Specs, s)
	return nil
}

// dropCollidingAliases removes aliases that name another model's ID or
// that two models share: an ID always wins, and a shared alias names
// neither.
func (b *builder) dropCollidingAliases() {
	count := map[string]int{}
	for _, s := range b.cat.Specs {
		for _, a := range s.Aliases {
			count[a]++
		}
	}
	for i := range b.cat.Specs {
		s := &b.cat.Specs[i]
		s.Aliases = slices.DeleteFunc(s.Aliases, func(a string) bool {
			_, isID := b.ids[a]
			return isID || count[a] > 1
		})
	}
}

// flagModel reads one --model value.
func (b *builder) flagModel(v, modelID string, lone bool) (registry.Spec, error) {
	id, path := "", v
	if before, after, ok := strings.Cut(v, "="); ok && before != "" && !strings.ContainsAny(before, `/\`) {
		id, path = before, after
		if modelID != "" {
			return registry.Spec{}, fmt.Errorf("--model %s: the value names its id, and --model-id another", v)
		}
	}
	if path == "" {
		return registry.Spec{}, fmt.Errorf("--model %q: no path", v)
	}
	if id == "" {
		id = modelID
	}
	e := entry{ID: id, Path: path}
	if lone {
		forever, preload := registry.KeepAliveForever, true
		e.KeepAlive, e.Preload = &forever, &preload
	}
	s, err := b.fromEntry(e, "--model", nil)
	if err != nil {
		return registry.Spec{}, fmt.Errorf("--model %s: %w", v, err)
	}
	return s, nil
}

// dir reads every *.gguf file of a folder, in name order.
func (b *builder) dir(dir string) error {
	source := "--models-dir " + dir
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("--models-dir: %w", err)
	}
	if len(entries) > maxDirEntries {
		return fmt.Errorf("--models-dir %s: %d entries, more than %d", dir, len(entries), maxDirEntries)
	}
	for _, de := range entries {
		if !strings.EqualFold(filepath.Ext(de.Name()), ".gguf") || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, de.Name())
		if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
			continue // a folder or a dangling link named *.gguf
		}
		s, err := b.fromEntry(entry{Path: path}, source, nil)
		if err != nil {
			b.cat.Problems = append(b.cat.Problems, Problem{Source: source, Name: path, Err: err})
			continue
		}
		if err := b.add(s); err != nil {
			return err
		}
	}
	return nil
}

// store reads every model of an Ollama store that no manifest entry took.
func (b *builder) store(st *ollama.Store) error {
	source := "ollama store " + st.Dir()
	list, err := st.List()
	if err != nil {
		return err
	}
	for _, l := range list {
		if l.Err != nil {
			b.cat.Problems = append(b.cat.Problems, Problem{Source: source, Name: l.Name, Err: l.Err})
			continue
		}
		if b.ollamaTaken[l.Model.Name] {
			continue // a manifest entry serves it with its own settings
		}
		s, err := b.fromOllama(entry{}, l.Model, source)
		if err != nil {
			b.cat.Problems = append(b.cat.Problems, Problem{Source: source, Name: l.Model.ShortName, Err: err})
			continue
		}
		if err := b.add(s); err != nil {
			return err
		}
	}
	return nil
}

// checkID refuses IDs that cannot travel in JSON, URLs and logs as they
// are: empty, over 256 bytes, invalid UTF-8, control characters, or
// surrounding space. (A GGUF's general.name, today's default ID, may hold
// spaces: "Llama 3.2 1B Instruct".)
func checkID(id string) error {
	switch {
	case id == "" || len(id) > maxIDBytes:
		return fmt.Errorf("model id of %d bytes (1 to %d)", len(id), maxIDBytes)
	case !utf8.ValidString(id) || strings.IndexFunc(id, unicode.IsControl) >= 0:
		return fmt.Errorf("model id %q: invalid UTF-8 or a control character", id)
	case strings.TrimSpace(id) != id:
		return fmt.Errorf("model id %q: surrounding space", id)
	}
	return nil
}
