package models

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
)

// checkGGUF validates a GGUF file before anything else reads it: the
// container as llama.cpp's gguf.cpp reads it (version, counts, key and
// tensor-info layout, types, shapes, offsets and the data section within
// the file), and what llama.cpp would abort on rather than report
// (GGML_ASSERT in asserting getters, a division by a zero dimension, a
// tokenizer array shorter than the vocabulary, duplicate tokens). Every
// length is checked against the bytes left before anything is allocated,
// so a hostile file costs at most its own size. It is not a proof that
// llama.cpp loads the file: its model code has checks of its own, which
// fail with an error.
func checkGGUF(r io.ReaderAt, size int64) error {
	c := &ggufChecker{r: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10), size: size}
	return c.check()
}

// GGUF value types.
const (
	ggufU8 = iota
	ggufI8
	ggufU16
	ggufI16
	ggufU32
	ggufI32
	ggufF32
	ggufBool
	ggufString
	ggufArray
	ggufU64
	ggufI64
	ggufF64
	ggufTypes
)

var ggufScalarSize = [ggufTypes]int64{1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}

// ggmlWeightTypes are the tensor types llama.cpp computes with: block size
// and bytes per block (ggml.c's type_traits). Integer and f64 tensors,
// and types whose support was removed, are refused.
var ggmlWeightTypes = map[uint32]struct{ block, size uint64 }{
	0: {1, 4}, 1: {1, 2}, 30: {1, 2}, // F32, F16, BF16
	2: {32, 18}, 3: {32, 20}, 6: {32, 22}, 7: {32, 24}, 8: {32, 34}, 9: {32, 36}, // Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1
	10: {256, 84}, 11: {256, 110}, 12: {256, 144}, 13: {256, 176}, 14: {256, 210}, 15: {256, 292}, // Q2_K..Q8_K
	16: {256, 66}, 17: {256, 74}, 18: {256, 98}, 19: {256, 50}, 20: {32, 18}, 21: {256, 110}, // IQ2_XXS IQ2_XS IQ3_XXS IQ1_S IQ4_NL IQ3_S
	22: {256, 82}, 23: {256, 136}, 29: {256, 56}, 34: {256, 54}, 35: {256, 66}, 39: {32, 17}, // IQ2_S IQ4_XS IQ1_M TQ1_0 TQ2_0 MXFP4
}

const (
	ggmlMaxDims      = 4
	ggmlMaxName      = 64 // GGML_MAX_NAME, terminator included
	defaultAlignment = 32
)

type ggufChecker struct {
	r    *bufio.Reader
	size int64
	pos  int64
	buf  [8]byte

	alignment uint64
	nTokens   int64 // -1 until tokenizer.ggml.tokens is read
	arrays    map[string]ggufArrayInfo
	keys      map[string]bool
}

type ggufArrayInfo struct {
	typ uint32
	n   int64
}

var errTruncated = errors.New("truncated")

func (c *ggufChecker) left() int64 { return c.size - c.pos }

func (c *ggufChecker) read(n int) ([]byte, error) {
	if int64(n) > c.left() {
		return nil, errTruncated
	}
	if _, err := io.ReadFull(c.r, c.buf[:n]); err != nil {
		return nil, errTruncated
	}
	c.pos += int64(n)
	return c.buf[:n], nil
}

func (c *ggufChecker) u32() (uint32, error) {
	b, err := c.read(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (c *ggufChecker) u64() (uint64, error) {
	b, err := c.read(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (c *ggufChecker) skip(n int64) error {
	if n < 0 || n > c.left() {
		return errTruncated
	}
	if _, err := c.r.Discard(int(n)); err != nil {
		return errTruncated
	}
	c.pos += n
	return nil
}

// str reads a string; keep returns it (else it is skipped).
func (c *ggufChecker) str(keep bool) (string, error) {
	n, err := c.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(c.left()) {
		return "", fmt.Errorf("string of %d bytes past the end of the file", n)
	}
	if !keep {
		return "", c.skip(int64(n))
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		return "", errTruncated
	}
	c.pos += int64(n)
	return string(b), nil
}

func (c *ggufChecker) check() error {
	magic, err := c.read(4)
	if err != nil || string(magic) != "GGUF" {
		return errors.New("not a GGUF file")
	}
	version, err := c.u32()
	if err != nil {
		return err
	}
	if version != 2 && version != 3 {
		return fmt.Errorf("GGUF version %d (llama.cpp reads 2 and 3, little-endian)", version)
	}
	nTensors, err := c.u64()
	if err != nil {
		return err
	}
	nKV, err := c.u64()
	if err != nil {
		return err
	}
	// A key-value takes at least 13 bytes, a tensor info at least 24.
	if nKV > uint64(c.left()/13) || nTensors > uint64(c.left()/24) {
		return fmt.Errorf("%d key-values and %d tensors cannot fit in the file", nKV, nTensors)
	}
	c.alignment, c.nTokens = defaultAlignment, -1
	c.arrays, c.keys = map[string]ggufArrayInfo{}, map[string]bool{}
	for i := range nKV {
		if err := c.kv(); err != nil {
			return fmt.Errorf("key-value %d: %w", i, err)
		}
	}
	if err := c.tokenizer(); err != nil {
		return err
	}
	return c.tensors(int64(nTensors))
}

// kv reads one key-value, recording what later checks need.
func (c *ggufChecker) kv() error {
	key, err := c.str(true)
	if err != nil {
		return err
	}
	switch {
	case key == "": // gguf.cpp asserts !key.empty()
		return errors.New("empty key")
	case c.keys[key]:
		return fmt.Errorf("duplicate key %q", key)
	}
	c.keys[key] = true
	typ, err := c.u32()
	if err != nil {
		return err
	}
	if typ >= ggufTypes {
		return fmt.Errorf("key %q: invalid type %d", key, typ)
	}
	if typ == ggufArray {
		return c.array(key)
	}
	if key == "general.alignment" {
		if typ != ggufU32 { // gguf.cpp asserts the type
			return fmt.Errorf("general.alignment must be a uint32, has type %d", typ)
		}
		a, err := c.u32()
		if err != nil {
			return err
		}
		if a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("general.alignment %d is not a power of 2", a)
		}
		c.alignment = uint64(a)
		return nil
	}
	if typ == ggufString {
		_, err := c.str(false)
		return err
	}
	return c.skip(ggufScalarSize[typ])
}

func (c *ggufChecker) array(key string) error {
	typ, err := c.u32()
	if err != nil {
		return err
	}
	n, err := c.u64()
	if err != nil {
		return err
	}
	if typ >= ggufTypes || typ == ggufArray {
		return fmt.Errorf("key %q: invalid array type %d", key, typ)
	}
	if n > uint64(c.left()) { // every element takes a byte or more
		return fmt.Errorf("key %q: array of %d elements past the end of the file", key, n)
	}
	c.arrays[key] = ggufArrayInfo{typ: typ, n: int64(n)}
	if typ != ggufString {
		return c.skip(int64(n) * ggufScalarSize[typ])
	}
	if key != "tokenizer.ggml.tokens" {
		for range n {
			if _, err := c.str(false); err != nil {
				return fmt.Errorf("key %q: %w", key, err)
			}
		}
		return nil
	}
	// llama.cpp maps each token text to its id and asserts the map is as
	// large as the vocabulary: tokens must be distinct (an empty one is
	// renamed [EMPTY_<id>]).
	seen := make(map[string]struct{}, min(n, 1<<20))
	for i := range n {
		s, err := c.str(true)
		if err != nil {
			return fmt.Errorf("token %d: %w", i, err)
		}
		if s == "" {
			s = fmt.Sprintf("[EMPTY_%d]", i)
		}
		if _, dup := seen[s]; dup {
			return fmt.Errorf("token %d (%q) appears twice in tokenizer.ggml.tokens", i, s)
		}
		seen[s] = struct{}{}
	}
	c.nTokens = int64(n)
	return nil
}

// tokenizer checks the arrays llama.cpp's vocabulary loader reads through
// asserting getters or as raw arrays of the vocabulary's length.
func (c *ggufChecker) tokenizer() error {
	if c.keys["tokenizer.ggml.tokens"] && c.nTokens < 0 {
		return errors.New("tokenizer.ggml.tokens must be an array of strings")
	}
	if c.nTokens > math.MaxInt32 {
		return fmt.Errorf("%d tokens", c.nTokens)
	}
	need := []struct {
		key string
		typ uint32
	}{
		{"tokenizer.ggml.scores", ggufF32},
		{"tokenizer.ggml.token_type", ggufI32},
	}
	for _, k := range need {
		if !c.keys[k.key] {
			continue
		}
		a, ok := c.arrays[k.key]
		if !ok || a.typ != k.typ {
			return fmt.Errorf("%s must be an array of GGUF type %d", k.key, k.typ)
		}
		if c.nTokens >= 0 && a.n < c.nTokens {
			return fmt.Errorf("%s has %d entries for %d tokens", k.key, a.n, c.nTokens)
		}
	}
	if c.keys["tokenizer.ggml.merges"] {
		if a, ok := c.arrays["tokenizer.ggml.merges"]; !ok || a.typ != ggufString {
			return errors.New("tokenizer.ggml.merges must be an array of strings")
		}
	}
	if c.keys["tokenizer.ggml.precompiled_charsmap"] {
		if a, ok := c.arrays["tokenizer.ggml.precompiled_charsmap"]; !ok || a.typ == ggufString {
			return errors.New("tokenizer.ggml.precompiled_charsmap must be an array of numbers")
		}
	}
	return nil
}

// tensors checks the tensor infos and that the data section they describe
// lies within the file, with the offsets llama.cpp requires (in order,
// aligned, contiguous).
func (c *ggufChecker) tensors(n int64) error {
	type info struct {
		name   string
		offset uint64
		bytes  uint64
	}
	infos := make([]info, 0, min(n, 1<<16))
	names := map[string]bool{}
	for i := range n {
		name, err := c.str(true)
		if err != nil {
			return fmt.Errorf("tensor %d: %w", i, err)
		}
		if len(name) >= ggmlMaxName || names[name] {
			return fmt.Errorf("tensor %d: name %q too long or repeated", i, name)
		}
		names[name] = true
		dims, err := c.u32()
		if err != nil {
			return err
		}
		if dims == 0 || dims > ggmlMaxDims {
			return fmt.Errorf("tensor %q: %d dimensions", name, dims)
		}
		elems := uint64(1)
		var ne0 uint64
		for d := range dims {
			v, err := c.u64()
			if err != nil {
				return err
			}
			// gguf.cpp divides INT64_MAX by every dimension.
			if v == 0 || v > math.MaxInt64 {
				return fmt.Errorf("tensor %q: dimension %d is %d", name, d, v)
			}
			hi, lo := bits.Mul64(elems, v)
			if hi != 0 || lo > math.MaxInt64 {
				return fmt.Errorf("tensor %q: element count overflows", name)
			}
			elems = lo
			if d == 0 {
				ne0 = v
			}
		}
		typ, err := c.u32()
		if err != nil {
			return err
		}
		tt, ok := ggmlWeightTypes[typ]
		if !ok {
			return fmt.Errorf("tensor %q: ggml type %d is not a weight type llama.cpp computes with", name, typ)
		}
		if ne0%tt.block != 0 {
			return fmt.Errorf("tensor %q: %d elements per row, not a multiple of the block size %d", name, ne0, tt.block)
		}
		hi, bytes := bits.Mul64(elems/tt.block, tt.size)
		if hi != 0 || bytes > uint64(c.size) {
			return fmt.Errorf("tensor %q: %d elements do not fit in the file", name, elems)
		}
		off, err := c.u64()
		if err != nil {
			return err
		}
		infos = append(infos, info{name, off, bytes})
	}
	data := alignUp(uint64(c.pos), c.alignment)
	var want uint64
	for _, t := range infos {
		if t.offset != want {
			return fmt.Errorf("tensor %q at offset %d, expected %d", t.name, t.offset, want)
		}
		want += alignUp(t.bytes, c.alignment)
		if want > uint64(c.size) {
			return fmt.Errorf("tensor %q ends past the end of the file", t.name)
		}
	}
	if len(infos) > 0 && data+want-alignUp(infos[len(infos)-1].bytes, c.alignment)+infos[len(infos)-1].bytes > uint64(c.size) {
		return fmt.Errorf("tensor data (%d bytes from offset %d) ends past the end of the file (%d bytes)", want, data, c.size)
	}
	return nil
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) / a * a }
