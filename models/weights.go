package models

import (
	"bufio"
	"encoding/binary"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"

	"github.com/ollama/ollama/fs/ggml"
)

// GGML tensor types used by the generator (ggml_type numbering).
const (
	tensorF32  = uint32(ggml.TensorTypeF32)
	tensorQ8_0 = uint32(ggml.TensorTypeQ8_0)
)

// q8Block is the number of values in a Q8_0 block; a block is an fp16
// scale followed by that many int8 quants.
const (
	q8Block     = 32
	q8BlockSize = 2 + q8Block
)

// randomQ8 streams a Q8_0 matrix of ne1 rows of ne0 normal values with
// standard deviation std (times rowScale(row) when set). Its values depend
// only on seed and name, so tensors can be written in any order or in
// parallel.
type randomQ8 struct {
	seed     uint64
	name     string
	ne0, ne1 int
	std      float64
	rowScale func(row int) float64
}

func (t *randomQ8) WriteTo(w io.Writer) (int64, error) {
	h := fnv.New64a()
	h.Write([]byte(t.name))
	rng := rand.New(rand.NewPCG(t.seed, h.Sum64()))
	bw := bufio.NewWriterSize(w, 1<<16)
	row := make([]float32, t.ne0)
	buf := make([]byte, t.ne0/q8Block*q8BlockSize)
	var n int64
	for r := range t.ne1 {
		std := t.std
		if t.rowScale != nil {
			std *= t.rowScale(r)
		}
		for i := range row {
			row[i] = float32(rng.NormFloat64() * std)
		}
		quantizeQ8(buf, row)
		m, err := bw.Write(buf)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, bw.Flush()
}

// onesF32 streams n float32 ones (RMS norm weights).
type onesF32 struct{ n int }

func (t onesF32) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 4*t.n)
	for i := 0; i < len(buf); i += 4 {
		binary.LittleEndian.PutUint32(buf[i:], math.Float32bits(1))
	}
	m, err := w.Write(buf)
	return int64(m), err
}

// quantizeQ8 writes x (a multiple of 32 values) to dst as Q8_0 blocks, like
// ggml's quantize_row_q8_0_ref.
func quantizeQ8(dst []byte, x []float32) {
	for b := range len(x) / q8Block {
		blk := x[b*q8Block : (b+1)*q8Block]
		var amax float32
		for _, v := range blk {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		out := dst[b*q8BlockSize : (b+1)*q8BlockSize]
		binary.LittleEndian.PutUint16(out, float32ToHalf(d))
		for i, v := range blk {
			out[2+i] = byte(int8(math.Round(float64(v * id))))
		}
	}
}

// float32ToHalf converts f to IEEE 754 binary16, rounding to nearest even.
func float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b>>23&0xff == 0xff: // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp >= 0x1f:
		return sign | 0x7c00
	case exp <= 0: // subnormal or zero
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint(14 - exp)
		m, rem, half := mant>>shift, mant&(1<<shift-1), uint32(1)<<(shift-1)
		if rem > half || rem == half && m&1 == 1 {
			m++
		}
		return sign | uint16(m)
	}
	h := sign | uint16(exp)<<10 | uint16(mant>>13)
	if rem := mant & 0x1fff; rem > 0x1000 || rem == 0x1000 && h&1 == 1 {
		h++ // a carry into the exponent is still correct
	}
	return h
}
