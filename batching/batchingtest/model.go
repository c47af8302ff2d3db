package batchingtest

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/nextact/nextact/batching"
)

// NextFunc writes into row (the vocabulary's size, zeroed) the logits of
// sequence seq after hist, its tokens so far; served is how many rows the
// sequence was served since it was last cleared. It is called under the
// Model's lock.
type NextFunc func(seq int32, hist []int32, served int, row []float32)

// Model is a deterministic language model for tests with the KV
// bookkeeping of llama.cpp: it keeps each sequence's tokens, refuses
// positions that are not consecutive from 0 (llama.cpp does), and writes
// each step's logits rows into buffers that the next Decode overwrites,
// like llama.cpp's output buffer: a scheduler that reads a row after the
// next Decode reads NaN or another step's row (and, under -race, races
// with the write). It records every step's sequence ids. Goroutine-safe.
type Model struct {
	vocab int
	eog   []int32
	next  NextFunc

	mu      sync.Mutex
	hist    map[int32][]int32
	served  map[int32]int
	rows    [][]float32 // per batch entry of the last step: its row, or nil
	bufs    [][]float32
	batches [][]int32
	cleared map[int32]int
}

// NewModel makes a model of vocab tokens (bytes are 0..255; give more for
// end-of-generation tokens) whose end-of-generation tokens are eog and
// whose logits next writes.
func NewModel(vocab int, eog []int32, next NextFunc) *Model {
	return &Model{
		vocab: vocab, eog: eog, next: next,
		hist: map[int32][]int32{}, served: map[int32]int{}, cleared: map[int32]int{},
	}
}

var (
	_ batching.Engine   = (*Model)(nil)
	_ batching.Vocab    = (*Model)(nil)
	_ batching.KVReuser = (*Model)(nil)
)

// Engine returns an Engine whose fields call m (no KV reuse: the prefix
// cache stays off), for a test to wrap.
func (m *Model) Engine() *Engine {
	return &Engine{DecodeFunc: m.Decode, LogitsFunc: m.Logits, ClearSeqFunc: m.ClearSeq}
}

// Reuser returns a Reuser whose fields call m (the prefix cache on).
func (m *Model) Reuser() *Reuser {
	return &Reuser{Engine: m.Engine(), TrimSeqFunc: m.TrimSeq, CopySeqFunc: m.CopySeq}
}

// Decode appends the batch's tokens to their sequences and computes the
// rows asked for.
func (m *Model) Decode(b *batching.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range b.Len() {
		if b.Tokens[i] < 0 || int(b.Tokens[i]) >= m.vocab {
			return &batching.SeqError{Seq: b.Seq[i], Err: fmt.Errorf("token %d outside the vocabulary", b.Tokens[i])}
		}
	}
	m.batches = append(m.batches, slices.Clone(b.Seq))
	for _, r := range m.bufs { // the last step's views are dead now
		for j := range r {
			r[j] = float32(math.NaN())
		}
	}
	m.rows = m.rows[:0]
	used := 0
	for i := range b.Len() {
		seq := b.Seq[i]
		h := m.hist[seq]
		if int(b.Pos[i]) != len(h) {
			return fmt.Errorf("seq %d: position %d, want %d", seq, b.Pos[i], len(h))
		}
		m.hist[seq] = append(h, b.Tokens[i])
		if !b.Logits[i] {
			m.rows = append(m.rows, nil)
			continue
		}
		if used == len(m.bufs) {
			m.bufs = append(m.bufs, make([]float32, m.vocab))
		}
		row := m.bufs[used]
		used++
		clear(row)
		m.next(seq, m.hist[seq], m.served[seq], row)
		m.served[seq]++
		m.rows = append(m.rows, row)
	}
	return nil
}

// Logits returns a view of entry i's row of the last Decode.
func (m *Model) Logits(i int) ([]float32, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if i < 0 || i >= len(m.rows) || m.rows[i] == nil {
		return nil, fmt.Errorf("no logits for entry %d", i)
	}
	return m.rows[i], nil
}

// ClearSeq drops a sequence's tokens.
func (m *Model) ClearSeq(seq int32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.hist, seq)
	delete(m.served, seq)
	m.cleared[seq]++
	return nil
}

// TrimSeq keeps a sequence's first keep tokens.
func (m *Model) TrimSeq(seq int32, keep int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hist[seq]
	if keep > len(h) {
		return fmt.Errorf("trim seq %d to %d: it holds %d", seq, keep, len(h))
	}
	m.hist[seq] = h[:keep:keep]
	return nil
}

// CopySeq makes dst a copy of the whole of src.
func (m *Model) CopySeq(src, dst int32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hist[dst] = slices.Clone(m.hist[src])
	return nil
}

// Piece is a byte token's byte; other tokens have no text.
func (m *Model) Piece(tok int32) string {
	if tok >= 0 && tok < 256 {
		return string([]byte{byte(tok)})
	}
	return ""
}

// IsEOG reports whether tok is one of the model's end-of-generation
// tokens.
func (m *Model) IsEOG(tok int32) bool { return slices.Contains(m.eog, tok) }

// Size is the vocabulary's size.
func (m *Model) Size() int { return m.vocab }

// Held is the number of sequences with tokens in the KV.
func (m *Model) Held() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, h := range m.hist {
		if len(h) > 0 {
			n++
		}
	}
	return n
}

// Batches returns the sequence id of every entry of every step so far.
func (m *Model) Batches() [][]int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.batches)
}

// Cleared is how many times seq was cleared.
func (m *Model) Cleared(seq int32) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cleared[seq]
}

// HashNext is a model whose best token after a history is a hash of the
// whole history (printable ASCII), so any mix-up of positions or
// sequences by a scheduler changes the text; eog wins about one step in
// 40, never when eog is negative. The other logits are small and
// varied, so sampling at a temperature draws among many tokens.
func HashNext(eog int32) NextFunc {
	return func(_ int32, hist []int32, _ int, row []float32) {
		x := hash(hist)
		for i := range row {
			row[i] = float32((x>>uint(i%13))%7) * 0.1
		}
		best := int32(32 + x%90)
		if x%40 == 0 && eog >= 0 {
			best = eog
		}
		row[best] = 10
	}
}

func hash(hist []int32) uint32 {
	var x uint32 = 2166136261
	for _, t := range hist {
		x = (x ^ uint32(t)) * 16777619
	}
	return x
}

// HashGreedy is HashNext's greedy output after prompt, at most maxTokens
// tokens, computed without a scheduler: an oracle.
func HashGreedy(eog int32, vocab int, prompt []int32, maxTokens int) string {
	next := HashNext(eog)
	row := make([]float32, vocab)
	hist := slices.Clone(prompt)
	var out []byte
	for range maxTokens {
		clear(row)
		next(0, hist, 0, row)
		best := int32(slices.Index(row, slices.Max(row)))
		if best == eog {
			break
		}
		out = append(out, byte(best))
		hist = append(hist, best)
	}
	return string(out)
}

// NextByte is WalkNext's greedy token after last: printable ASCII that
// walks all 95 characters (quote and backslash included), so greedy text
// is predictable from a prompt's last byte alone.
func NextByte(last int32) int32 {
	return 32 + ((last-32+7)%95+95)%95
}

// WalkText is what WalkNext generates greedily after a prompt ending in
// last, n tokens.
func WalkText(last byte, n int) string {
	b := make([]byte, n)
	t := int32(last)
	for i := range b {
		t = NextByte(t)
		b[i] = byte(t)
	}
	return string(b)
}

// WalkNext is a model whose greedy token is NextByte of the history's last
// token; with eogAfter > 0, a sequence's row after its eogAfter-th makes
// eog the greedy token instead.
func WalkNext(eog int32, eogAfter int) NextFunc {
	return func(_ int32, hist []int32, served int, row []float32) {
		best := NextByte(hist[len(hist)-1])
		if eogAfter > 0 && served >= eogAfter {
			best = eog
		}
		row[best] = 10
	}
}
