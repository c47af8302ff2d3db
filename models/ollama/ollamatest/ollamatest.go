// Package ollamatest lays out Ollama model stores on disk for tests, the
// way Ollama writes them (manifests/<host>/<namespace>/<model>/<tag>,
// blobs/sha256-<hex> named by each blob's real sha256).
package ollamatest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ollama/ollama/types/model"

	"github.com/nextact/nextact/models/ollama"
)

// Layer is a layer to write: its media type and content.
type Layer struct {
	MediaType string
	Data      []byte
}

// Manifest is what Write wrote: the manifest's path and its layers as
// listed in it.
type Manifest struct {
	Path   string
	Layers []ollama.Blob
}

// Write adds a model named name (an Ollama name, e.g. "shopper-ft:latest")
// to the store in dir: the GGUF at ggufPath as its model layer (copied into
// blobs/), a params layer when params is not nil, the extra layers, a
// config blob, and the manifest.
func Write(dir, name, ggufPath string, params map[string]any, extra ...Layer) (Manifest, error) {
	n, err := ollama.ParseName(name)
	if err != nil {
		return Manifest{}, err
	}
	var mf Manifest
	type layer struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	var layers []layer
	add := func(media string, b ollama.Blob) {
		layers = append(layers, layer{media, b.Digest, b.Size})
		mf.Layers = append(mf.Layers, b)
	}
	f, err := os.Open(ggufPath)
	if err != nil {
		return Manifest{}, fmt.Errorf("write store: %w", err)
	}
	b, err := WriteBlob(dir, f)
	f.Close()
	if err != nil {
		return Manifest{}, err
	}
	add(ollama.MediaModel, b)
	if params != nil {
		data, err := json.Marshal(params)
		if err != nil {
			return Manifest{}, fmt.Errorf("write store: %w", err)
		}
		if b, err = WriteBytes(dir, data); err != nil {
			return Manifest{}, err
		}
		add(ollama.MediaParams, b)
	}
	for _, l := range extra {
		if b, err = WriteBytes(dir, l.Data); err != nil {
			return Manifest{}, err
		}
		add(l.MediaType, b)
	}
	diffIDs := make([]string, len(layers))
	for i, l := range layers {
		diffIDs[i] = l.Digest
	}
	cfg, err := json.Marshal(map[string]any{
		"model_format": "gguf", "model_family": "llama", "model_families": []string{"llama"},
		"model_type": "tiny", "file_type": "Q8_0", "architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("write store: %w", err)
	}
	cb, err := WriteBytes(dir, cfg)
	if err != nil {
		return Manifest{}, err
	}
	data, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": ollama.MediaManifest,
		"config": layer{ollama.MediaConfig, cb.Digest, cb.Size}, "layers": layers,
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("write store: %w", err)
	}
	mf.Path = ManifestPath(dir, n)
	if err := os.MkdirAll(filepath.Dir(mf.Path), 0o755); err != nil {
		return Manifest{}, fmt.Errorf("write store: %w", err)
	}
	if err := os.WriteFile(mf.Path, data, 0o644); err != nil {
		return Manifest{}, fmt.Errorf("write store: %w", err)
	}
	return mf, nil
}

// ManifestPath is where the manifest of n lives in the store in dir.
func ManifestPath(dir string, n model.Name) string {
	return filepath.Join(dir, "manifests", n.Filepath())
}

// WriteBytes stores data as a blob named by its sha256.
func WriteBytes(dir string, data []byte) (ollama.Blob, error) {
	sum := sha256.Sum256(data)
	b := blobOf(dir, hex.EncodeToString(sum[:]), int64(len(data)))
	if err := os.MkdirAll(filepath.Dir(b.Path), 0o755); err != nil {
		return ollama.Blob{}, fmt.Errorf("write blob: %w", err)
	}
	if err := os.WriteFile(b.Path, data, 0o644); err != nil {
		return ollama.Blob{}, fmt.Errorf("write blob: %w", err)
	}
	return b, nil
}

// WriteBlob copies r into the store as a blob named by its sha256.
func WriteBlob(dir string, r io.Reader) (ollama.Blob, error) {
	blobs := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return ollama.Blob{}, fmt.Errorf("write blob: %w", err)
	}
	tmp, err := os.CreateTemp(blobs, "sha256-partial-")
	if err != nil {
		return ollama.Blob{}, fmt.Errorf("write blob: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ollama.Blob{}, fmt.Errorf("write blob: %w", err)
	}
	b := blobOf(dir, hex.EncodeToString(h.Sum(nil)), n)
	if err := os.Rename(tmp.Name(), b.Path); err != nil {
		return ollama.Blob{}, fmt.Errorf("write blob: %w", err)
	}
	return b, nil
}

func blobOf(dir, hexSum string, size int64) ollama.Blob {
	return ollama.Blob{Path: filepath.Join(dir, "blobs", "sha256-"+hexSum), Size: size, Digest: "sha256:" + hexSum}
}
