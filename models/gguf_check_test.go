package models_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nextact/nextact/models"
)

// ggufFile writes small GGUF files, field by field, so that each test can
// break exactly one thing.
type ggufFile struct {
	version  uint32
	kvs      [][]byte // encoded key-values
	tensors  [][]byte // encoded tensor infos
	nTensors int64    // -1: len(tensors)
	nKV      int64    // -1: len(kvs)
	data     int      // bytes of tensor data after the aligned header
}

func le(v any) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, v)
	return b.Bytes()
}

func gstr(s string) []byte { return append(le(uint64(len(s))), s...) }

func kvString(k, v string) []byte { return bytes.Join([][]byte{gstr(k), le(uint32(8)), gstr(v)}, nil) }

func kvU32(k string, v uint32) []byte {
	return bytes.Join([][]byte{gstr(k), le(uint32(4)), le(v)}, nil)
}

func kvU64(k string, v uint64) []byte {
	return bytes.Join([][]byte{gstr(k), le(uint32(10)), le(v)}, nil)
}

func kvStrings(k string, vs ...string) []byte {
	b := bytes.Join([][]byte{gstr(k), le(uint32(9)), le(uint32(8)), le(uint64(len(vs)))}, nil)
	for _, v := range vs {
		b = append(b, gstr(v)...)
	}
	return b
}

func kvArray(k string, typ uint32, n uint64, elem []byte) []byte {
	b := bytes.Join([][]byte{gstr(k), le(uint32(9)), le(typ), le(n)}, nil)
	for range n {
		b = append(b, elem...)
	}
	return b
}

func tensorInfo(name string, typ uint32, off uint64, dims ...uint64) []byte {
	b := append(gstr(name), le(uint32(len(dims)))...)
	for _, d := range dims {
		b = append(b, le(d)...)
	}
	return append(append(b, le(typ)...), le(off)...)
}

// validGGUF is a well-formed file: a llama architecture, a three-token
// vocabulary with scores and types, one f32 tensor of 32 floats.
func validGGUF() ggufFile {
	return ggufFile{
		version: 3, nTensors: -1, nKV: -1, data: 128,
		kvs: [][]byte{
			kvString("general.architecture", "llama"),
			kvU32("llama.context_length", 64),
			kvStrings("tokenizer.ggml.tokens", "a", "b", "c"),
			kvArray("tokenizer.ggml.scores", 6, 3, le(float32(0))),
			kvArray("tokenizer.ggml.token_type", 5, 3, le(int32(1))),
		},
		tensors: [][]byte{tensorInfo("token_embd.weight", 0, 0, 32)},
	}
}

func (g ggufFile) bytes() []byte {
	nt, nk := g.nTensors, g.nKV
	if nt < 0 {
		nt = int64(len(g.tensors))
	}
	if nk < 0 {
		nk = int64(len(g.kvs))
	}
	b := append([]byte("GGUF"), le(g.version)...)
	b = append(append(b, le(uint64(nt))...), le(uint64(nk))...)
	for _, kv := range g.kvs {
		b = append(b, kv...)
	}
	for _, t := range g.tensors {
		b = append(b, t...)
	}
	for len(b)%32 != 0 {
		b = append(b, 0)
	}
	return append(b, make([]byte, g.data)...)
}

// Malformed files are an error from Inspect, with no allocation beyond the
// file's size: every case here is either what llama.cpp aborts on (an
// empty key, a non-u32 alignment, a zero dimension it divides by,
// duplicate tokens, a scores array shorter than the vocabulary) or what a
// trusting reader would allocate or loop on (huge lengths and counts).
func TestInspectRejectsMalformedGGUF(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	inspect := func(name string, data []byte) error {
		p := filepath.Join(dir, name+".gguf")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := models.Inspect(p)
		return err
	}
	if err := inspect("valid", validGGUF().bytes()); err != nil {
		t.Fatalf("valid file: %v", err)
	}
	mut := func(f func(g *ggufFile)) []byte {
		g := validGGUF()
		f(&g)
		return g.bytes()
	}
	valid := validGGUF().bytes()
	cases := map[string][]byte{
		"version 1":                mut(func(g *ggufFile) { g.version = 1 }),
		"version 4":                mut(func(g *ggufFile) { g.version = 4 }),
		"huge key-value count":     mut(func(g *ggufFile) { g.nKV = 1 << 62 }),
		"huge tensor count":        mut(func(g *ggufFile) { g.nTensors = 1 << 40 }),
		"empty key":                mut(func(g *ggufFile) { g.kvs = append(g.kvs, kvString("", "x")) }),
		"duplicate key":            mut(func(g *ggufFile) { g.kvs = append(g.kvs, kvU32("llama.context_length", 1)) }),
		"alignment not u32":        mut(func(g *ggufFile) { g.kvs = append(g.kvs, kvU64("general.alignment", 32)) }),
		"alignment not power of 2": mut(func(g *ggufFile) { g.kvs = append(g.kvs, kvU32("general.alignment", 48)) }),
		"invalid value type":       mut(func(g *ggufFile) { g.kvs = append(g.kvs, append(gstr("k"), le(uint32(13))...)) }),
		"nested array":             mut(func(g *ggufFile) { g.kvs = append(g.kvs, kvArray("k", 9, 1, nil)) }),
		"huge string": mut(func(g *ggufFile) {
			g.kvs = append(g.kvs, append(append(gstr("k"), le(uint32(8))...), le(uint64(1)<<60)...))
		}),
		"huge array": mut(func(g *ggufFile) {
			g.kvs = append(g.kvs, bytes.Join([][]byte{gstr("k"), le(uint32(9)), le(uint32(10)), le(uint64(1) << 61)}, nil))
		}),
		"duplicate tokens":          mut(func(g *ggufFile) { g.kvs[2] = kvStrings("tokenizer.ggml.tokens", "a", "b", "a") }),
		"tokens not strings":        mut(func(g *ggufFile) { g.kvs[2] = kvArray("tokenizer.ggml.tokens", 4, 3, le(uint32(0))) }),
		"scores shorter":            mut(func(g *ggufFile) { g.kvs[3] = kvArray("tokenizer.ggml.scores", 6, 2, le(float32(0))) }),
		"scores as strings":         mut(func(g *ggufFile) { g.kvs[3] = kvStrings("tokenizer.ggml.scores", "1", "2", "3") }),
		"token types as bytes":      mut(func(g *ggufFile) { g.kvs[4] = kvArray("tokenizer.ggml.token_type", 0, 3, le(uint8(1))) }),
		"merges not strings":        mut(func(g *ggufFile) { g.kvs = append(g.kvs, kvArray("tokenizer.ggml.merges", 4, 1, le(uint32(1)))) }),
		"zero dimension":            mut(func(g *ggufFile) { g.tensors[0] = tensorInfo("token_embd.weight", 0, 0, 32, 0) }),
		"five dimensions":           mut(func(g *ggufFile) { g.tensors[0] = tensorInfo("token_embd.weight", 0, 0, 32, 1, 1, 1, 1) }),
		"element count overflow":    mut(func(g *ggufFile) { g.tensors[0] = tensorInfo("token_embd.weight", 0, 0, 1<<32, 1<<32) }),
		"integer tensor type":       mut(func(g *ggufFile) { g.tensors[0] = tensorInfo("token_embd.weight", 26, 0, 32) }),
		"removed tensor type":       mut(func(g *ggufFile) { g.tensors[0] = tensorInfo("token_embd.weight", 4, 0, 32) }),
		"row not whole blocks":      mut(func(g *ggufFile) { g.tensors[0] = tensorInfo("token_embd.weight", 8, 0, 33) }),
		"name too long":             mut(func(g *ggufFile) { g.tensors[0] = tensorInfo(strings.Repeat("n", 64), 0, 0, 32) }),
		"duplicate tensor name":     mut(func(g *ggufFile) { g.tensors = append(g.tensors, tensorInfo("token_embd.weight", 0, 128, 32)) }),
		"tensor offset not aligned": mut(func(g *ggufFile) { g.tensors[0] = tensorInfo("token_embd.weight", 0, 4, 32) }),
		"tensor past end of file":   mut(func(g *ggufFile) { g.tensors[0] = tensorInfo("token_embd.weight", 0, 0, 64) }),
		"truncated header":          valid[:20],
		"truncated key-values":      valid[:len(valid)/3],
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if err := inspect(strings.ReplaceAll(name, " ", "_"), data); err == nil || !strings.Contains(err.Error(), "GGUF") {
				t.Fatalf("accepted (or wrong error): %v", err)
			}
		})
	}
}
