// Package ollama reads an existing Ollama model store, so that nextact can
// serve the GGUF models people already keep in Ollama by their Ollama
// names (llama3.2:1b, shopper-ft:latest, myuser/model:tag,
// host:port/namespace/model:tag).
//
// The store is Ollama's own layout (github.com/ollama/ollama v0.17.4,
// manifest/ and types/model): manifests/<host>/<namespace>/<model>/<tag>
// holds an OCI-style JSON manifest whose layers name blobs by digest, and
// blobs/sha256-<hex> holds each blob. Names are parsed by Ollama's own
// model.ParseName (default host registry.ollama.ai, namespace library,
// tag latest).
//
// What is verified, per model: the manifest is a regular file of at most
// 1 MiB with at most 1024 layers; every digest is sha256 with 64 hex
// digits; the model layer's blob exists, is a regular file of exactly the
// manifest's size and starts with the GGUF magic; the small layers
// (params, template, system, config) are at most 1 MiB each and of the
// manifest's size. Blobs are not hashed (a multi-GB hash at every start is
// too slow): a blob whose content was changed in place without changing
// its size is not detected here, though its GGUF structure is still
// checked by models.Inspect before llama.cpp reads it.
//
// A model nextact cannot serve is an error for that model alone: a
// vision projector, safetensors tensors or a tokenizer of Ollama's new
// engine, a remote (cloud) model, a config whose model_format is not
// gguf, two model layers, or a layer of an unknown
// application/vnd.ollama.image.* media type (it may change what the model
// computes). Adapter (LoRA) layers are listed; serving them is the
// caller's decision. License, messages and the deprecated embed layers are
// ignored, as are media types outside Ollama's prefix (as Ollama's
// clients ignore them).
package ollama

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ollama/ollama/types/model"
)

// Layer media types of an Ollama manifest.
const (
	MediaModel     = "application/vnd.ollama.image.model"
	MediaAdapter   = "application/vnd.ollama.image.adapter"
	MediaProjector = "application/vnd.ollama.image.projector"
	MediaParams    = "application/vnd.ollama.image.params"
	MediaTemplate  = "application/vnd.ollama.image.template"
	MediaPrompt    = "application/vnd.ollama.image.prompt" // the template's former name
	MediaSystem    = "application/vnd.ollama.image.system"
	MediaLicense   = "application/vnd.ollama.image.license"
	MediaMessages  = "application/vnd.ollama.image.messages"
	MediaEmbed     = "application/vnd.ollama.image.embed" // deprecated, ignored by Ollama
	MediaTensor    = "application/vnd.ollama.image.tensor"
	MediaTokenizer = "application/vnd.ollama.image.tokenizer"
	// MediaConfig is the config blob's media type as Ollama writes it.
	MediaConfig = "application/vnd.docker.container.image.v1+json"
	// MediaManifest is the manifest's own media type as Ollama writes it.
	MediaManifest = "application/vnd.docker.distribution.manifest.v2+json"

	ollamaPrefix = "application/vnd.ollama.image."
)

// Bounds on what the store reader accepts.
const (
	maxManifestBytes = 1 << 20
	maxLayers        = 1024
	maxSmallLayer    = 1 << 20
	maxNameBytes     = 512
	maxModels        = 100_000
	maxStops         = 16
	maxStopBytes     = 256
)

var digestRE = regexp.MustCompile(`^sha256[:-][0-9a-fA-F]{64}$`)

// Store is an Ollama models directory (the one holding manifests/ and
// blobs/). Its methods only read; they are safe for concurrent use.
type Store struct {
	dir string
}

// Open returns the store in dir, which must be a directory.
func Open(dir string) (*Store, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("ollama store: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("ollama store %s: not a directory", dir)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// DefaultDir is the store Ollama itself uses: $OLLAMA_MODELS when set
// (whether or not it exists, so that a wrong setting is an error at
// Open), else home/.ollama/models when that directory exists. ok is
// false when there is none.
func DefaultDir(getenv func(string) string, home string) (dir string, ok bool) {
	if d := getenv("OLLAMA_MODELS"); d != "" {
		return d, true
	}
	if home == "" {
		return "", false
	}
	d := filepath.Join(home, ".ollama", "models")
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return d, true
	}
	return "", false
}

// ParseName parses an Ollama model name as Ollama does, filling in the
// default host, namespace and tag; a name that is not fully qualified
// then (an empty or invalid part) is an error.
func ParseName(s string) (model.Name, error) {
	if len(s) > maxNameBytes {
		return model.Name{}, fmt.Errorf("model name of %d bytes, more than %d", len(s), maxNameBytes)
	}
	n := model.ParseName(s)
	if !n.IsFullyQualified() {
		return model.Name{}, fmt.Errorf("invalid Ollama model name %q", s)
	}
	return n, nil
}

// Model is one model of the store, as nextact can serve it.
type Model struct {
	// Name is the fully qualified name (registry.ollama.ai/library/llama3.2:1b),
	// ShortName the one Ollama displays (llama3.2:1b).
	Name, ShortName string
	// Digest is the sha256 of the manifest file, in hex (Ollama's digest).
	Digest string
	// Modified is the manifest's modification time.
	Modified time.Time
	// Size is the size of every layer and the config (Ollama's size).
	Size int64
	// GGUF is the model layer: its blob's path, size and digest.
	GGUF Blob
	// Adapters are the LoRA adapter layers, in manifest order.
	Adapters []Blob
	// Params are the params layer's values (none without one).
	Params Params
	// Template is Ollama's Go template (not used by nextact, which renders
	// by the chat format of the GGUF's own template); System the default
	// system prompt.
	Template, System string
	// Config is the config blob's description of the model.
	Config Config
}

// Blob is a layer's file in the store.
type Blob struct {
	Path   string
	Size   int64
	Digest string // sha256:<hex>
}

// Config is what Ollama's config blob says about the model.
type Config struct {
	ModelFormat   string   `json:"model_format"`
	ModelFamily   string   `json:"model_family"`
	ModelFamilies []string `json:"model_families"`
	ModelType     string   `json:"model_type"` // the parameter size, e.g. "1.2B"
	FileType      string   `json:"file_type"`  // the quantization, e.g. "Q8_0"
	RemoteHost    string   `json:"remote_host"`
}

// manifest and layer are Ollama's manifest JSON.
type manifest struct {
	SchemaVersion int     `json:"schemaVersion"`
	MediaType     string  `json:"mediaType"`
	Config        layer   `json:"config"`
	Layers        []layer `json:"layers"`
}

type layer struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// Model reads the model with the given Ollama name.
func (s *Store) Model(name string) (*Model, error) {
	n, err := ParseName(name)
	if err != nil {
		return nil, err
	}
	return s.read(n)
}

// Listing is one manifest found by List: its model, or why it cannot be
// served.
type Listing struct {
	// Name is the fully qualified name the manifest's path gives.
	Name  string
	Model *Model
	Err   error
}

// List reads every manifest of the store (manifests/<host>/<namespace>/
// <model>/<tag>), in path order. A manifest that cannot be served is a
// Listing with Err; the error is for the store as a whole (unreadable,
// more than 100,000 entries). A store without manifests/ is empty.
func (s *Store) List() ([]Listing, error) {
	root := filepath.Join(s.dir, "manifests")
	if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var out []Listing
	seen := 0
	var walk func(dir string, parts []string) error
	walk = func(dir string, parts []string) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("ollama store: %w", err)
		}
		for _, e := range entries {
			if seen++; seen > maxModels {
				return fmt.Errorf("ollama store %s: more than %d manifest entries", s.dir, maxModels)
			}
			p := append(parts[:len(parts):len(parts)], e.Name())
			path := filepath.Join(dir, e.Name())
			if len(p) < 4 {
				if e.IsDir() {
					if err := walk(path, p); err != nil {
						return err
					}
				}
				continue
			}
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue // Ollama's partial downloads and temp files
			}
			n := model.Name{Host: p[0], Namespace: p[1], Model: p[2], Tag: p[3]}
			l := Listing{Name: strings.Join(p[:3], "/") + ":" + p[3]}
			if !n.IsFullyQualified() {
				l.Err = fmt.Errorf("%s: not a valid Ollama model name", l.Name)
			} else {
				l.Model, l.Err = s.read(n)
			}
			out = append(out, l)
		}
		return nil
	}
	if err := walk(root, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// read reads and checks the manifest of n and the layers it names.
func (s *Store) read(n model.Name) (*Model, error) {
	m := &Model{Name: n.String(), ShortName: n.DisplayShortest()}
	fail := func(format string, args ...any) (*Model, error) {
		return nil, fmt.Errorf("ollama model %s: %s", m.ShortName, fmt.Sprintf(format, args...))
	}
	path := filepath.Join(s.dir, "manifests", n.Filepath())
	data, mod, err := readSmall(path, maxManifestBytes, -1)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("ollama model %s: not in the store %s: %w", m.ShortName, s.dir, err)
		}
		return fail("manifest: %v", err)
	}
	sum := sha256.Sum256(data)
	m.Digest, m.Modified = hex.EncodeToString(sum[:]), mod
	var mf manifest
	if err := json.Unmarshal(data, &mf); err != nil {
		return fail("manifest: %v", err)
	}
	if len(mf.Layers) > maxLayers {
		return fail("%d layers, more than %d", len(mf.Layers), maxLayers)
	}
	if err := s.readConfig(mf.Config, m); err != nil {
		return fail("%v", err)
	}
	for i, l := range mf.Layers {
		if l.Size < 0 {
			return fail("layer %d has size %d", i, l.Size)
		}
		m.Size += l.Size
		if err := s.readLayer(l, m); err != nil {
			return fail("layer %d (%s): %v", i, l.MediaType, err)
		}
	}
	if m.GGUF.Path == "" {
		return fail("no GGUF model layer (%s)", MediaModel)
	}
	return m, nil
}

func (s *Store) readConfig(l layer, m *Model) error {
	if l.Digest == "" {
		return nil
	}
	if l.Size < 0 {
		return fmt.Errorf("config has size %d", l.Size)
	}
	m.Size += l.Size
	path, err := s.blobPath(l.Digest)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	data, _, err := readSmall(path, maxSmallLayer, l.Size)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := json.Unmarshal(data, &m.Config); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	switch {
	case m.Config.RemoteHost != "":
		return fmt.Errorf("a remote model (served by %s): nextact serves local GGUF models only", m.Config.RemoteHost)
	case m.Config.ModelFormat != "" && !strings.EqualFold(m.Config.ModelFormat, "gguf"):
		return fmt.Errorf("model format %q: nextact serves GGUF models only", m.Config.ModelFormat)
	}
	return nil
}

// readLayer records what one layer contributes to m.
func (s *Store) readLayer(l layer, m *Model) error {
	// The type without its parameters ("; name=...; shape=2,2", which
	// mime.ParseMediaType refuses for the comma).
	media, _, _ := strings.Cut(l.MediaType, ";")
	media = strings.ToLower(strings.TrimSpace(media))
	switch media {
	case MediaModel:
		if m.GGUF.Path != "" {
			return errors.New("a second model layer")
		}
		b, err := s.blob(l)
		if err != nil {
			return err
		}
		if err := checkGGUFMagic(b.Path); err != nil {
			return err
		}
		m.GGUF = b
	case MediaAdapter:
		b, err := s.blob(l)
		if err != nil {
			return err
		}
		m.Adapters = append(m.Adapters, b)
	case MediaProjector:
		return errors.New("a vision projector: nextact serves text models only")
	case MediaTensor, MediaTokenizer, MediaTokenizer + ".config":
		return errors.New("safetensors tensors or a tokenizer of Ollama's new engine: nextact serves GGUF models only")
	case MediaParams:
		data, err := s.small(l)
		if err != nil {
			return err
		}
		if m.Params, err = parseParams(data); err != nil {
			return err
		}
	case MediaTemplate, MediaPrompt, MediaSystem:
		data, err := s.small(l)
		if err != nil {
			return err
		}
		if media == MediaSystem {
			m.System = string(data)
		} else {
			m.Template = string(data)
		}
	case MediaLicense, MediaMessages, MediaEmbed:
	default:
		if strings.HasPrefix(media, ollamaPrefix) {
			return fmt.Errorf("unknown media type %q", media)
		}
	}
	return nil
}

// blobPath is where a digest's blob lives, refusing anything but sha256.
func (s *Store) blobPath(digest string) (string, error) {
	if !digestRE.MatchString(digest) {
		return "", fmt.Errorf("digest %q is not sha256:<64 hex digits>", digest)
	}
	return filepath.Join(s.dir, "blobs", strings.Replace(digest, ":", "-", 1)), nil
}

// blob checks that a layer's blob exists with the manifest's size.
func (s *Store) blob(l layer) (Blob, error) {
	path, err := s.blobPath(l.Digest)
	if err != nil {
		return Blob{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return Blob{}, fmt.Errorf("blob: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() != l.Size {
		return Blob{}, fmt.Errorf("blob %s: %d bytes, the manifest says %d", path, st.Size(), l.Size)
	}
	return Blob{Path: path, Size: l.Size, Digest: l.Digest}, nil
}

// small reads a small layer's blob.
func (s *Store) small(l layer) ([]byte, error) {
	path, err := s.blobPath(l.Digest)
	if err != nil {
		return nil, err
	}
	data, _, err := readSmall(path, maxSmallLayer, l.Size)
	return data, err
}

// readSmall reads a regular file of at most limit bytes (and of exactly
// want bytes unless want is negative).
func readSmall(path string, limit, want int64) ([]byte, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	switch {
	case !st.Mode().IsRegular():
		return nil, time.Time{}, fmt.Errorf("%s: not a regular file", path)
	case st.Size() > limit:
		return nil, time.Time{}, fmt.Errorf("%s: %d bytes, more than %d", path, st.Size(), limit)
	case want >= 0 && st.Size() != want:
		return nil, time.Time{}, fmt.Errorf("%s: %d bytes, the manifest says %d", path, st.Size(), want)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, time.Time{}, err
	}
	return data, st.ModTime(), nil
}

func checkGGUFMagic(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("blob: %w", err)
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || !bytes.Equal(magic[:], []byte("GGUF")) {
		return fmt.Errorf("blob %s is not a GGUF file", path)
	}
	return nil
}
