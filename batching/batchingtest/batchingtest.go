// Package batchingtest is the test kit of package batching and its users:
// an Engine, a Vocab and a Reuser (batching.KVReuser) whose methods are
// function fields, so a test stages exactly the engine behaviour it needs
// (a failing step, a gate, a panic), and Model, a deterministic language
// model behind them that keeps the KV bookkeeping llama.cpp keeps.
//
// Tests drive the real llama.cpp engine wherever it can stage a case
// (runtime/llamacpp's tests); this kit is for what it cannot: failures,
// blocking, exact batch plans, NaN rows on chosen sequences.
package batchingtest

import (
	"errors"

	"github.com/nextact/nextact/batching"
)

// Engine is a batching.Engine whose methods call its function fields. A nil
// DecodeFunc or ClearSeqFunc succeeds doing nothing; a nil LogitsFunc
// fails. Set the fields before the scheduler starts.
type Engine struct {
	DecodeFunc   func(b *batching.Batch) error
	LogitsFunc   func(i int) ([]float32, error)
	ClearSeqFunc func(seq int32) error
}

var _ batching.Engine = (*Engine)(nil)

// errNoLogits is Logits without a LogitsFunc.
var errNoLogits = errors.New("batchingtest: no LogitsFunc")

// Decode calls DecodeFunc.
func (e *Engine) Decode(b *batching.Batch) error {
	if e.DecodeFunc == nil {
		return nil
	}
	return e.DecodeFunc(b)
}

// Logits calls LogitsFunc.
func (e *Engine) Logits(i int) ([]float32, error) {
	if e.LogitsFunc == nil {
		return nil, errNoLogits
	}
	return e.LogitsFunc(i)
}

// ClearSeq calls ClearSeqFunc.
func (e *Engine) ClearSeq(seq int32) error {
	if e.ClearSeqFunc == nil {
		return nil
	}
	return e.ClearSeqFunc(seq)
}

// Reuser is an Engine that also reuses KV (batching.KVReuser), which turns
// the scheduler's prefix cache on. A nil TrimSeqFunc or CopySeqFunc
// succeeds doing nothing.
type Reuser struct {
	*Engine
	TrimSeqFunc func(seq int32, keep int) error
	CopySeqFunc func(src, dst int32) error
}

var (
	_ batching.Engine   = (*Reuser)(nil)
	_ batching.KVReuser = (*Reuser)(nil)
)

// TrimSeq calls TrimSeqFunc.
func (r *Reuser) TrimSeq(seq int32, keep int) error {
	if r.TrimSeqFunc == nil {
		return nil
	}
	return r.TrimSeqFunc(seq, keep)
}

// CopySeq calls CopySeqFunc.
func (r *Reuser) CopySeq(src, dst int32) error {
	if r.CopySeqFunc == nil {
		return nil
	}
	return r.CopySeqFunc(src, dst)
}

// Vocab is a batching.Vocab whose methods call its function fields. With
// nil fields it is a byte vocabulary of Size tokens: tokens below 256 are
// their byte, the rest have no text, and none ends generation.
type Vocab struct {
	N         int
	PieceFunc func(tok int32) string
	IsEOGFunc func(tok int32) bool
}

var _ batching.Vocab = (*Vocab)(nil)

// Piece calls PieceFunc, else gives a byte token's byte.
func (v *Vocab) Piece(tok int32) string {
	if v.PieceFunc != nil {
		return v.PieceFunc(tok)
	}
	if tok >= 0 && tok < 256 {
		return string([]byte{byte(tok)})
	}
	return ""
}

// IsEOG calls IsEOGFunc, else false.
func (v *Vocab) IsEOG(tok int32) bool { return v.IsEOGFunc != nil && v.IsEOGFunc(tok) }

// Size is N.
func (v *Vocab) Size() int { return v.N }
