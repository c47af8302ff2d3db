package batchingtest_test

import (
	"errors"
	"testing"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/batchingtest"
)

func batch(seq int32, from int, toks ...int32) *batching.Batch {
	b := &batching.Batch{}
	for i, t := range toks {
		b.Add(t, int32(from+i), seq, i == len(toks)-1)
	}
	return b
}

// The model keeps llama.cpp's rules that a scheduler test relies on:
// positions consecutive from 0, tokens in the vocabulary, rows that the
// next Decode overwrites, and KV trim, copy and clear.
func TestModelKeepsTheEnginesRules(t *testing.T) {
	m := batchingtest.NewModel(300, []int32{256}, batchingtest.WalkNext(256, 2))
	if err := m.Decode(batch(0, 1, 'a')); err == nil {
		t.Fatal("a first position of 1 was accepted")
	}
	if err := m.Decode(batch(0, 0, 300)); !errors.As(err, new(*batching.SeqError)) {
		t.Fatalf("a token outside the vocabulary: %v, want a SeqError", err)
	}
	if err := m.Decode(batch(0, 0, 'a', 'b')); err != nil {
		t.Fatal(err)
	}
	row, err := m.Logits(1)
	if err != nil || row[batchingtest.NextByte('b')] != 10 {
		t.Fatalf("row %v, %v", row[:0], err)
	}
	if _, err := m.Logits(0); err == nil {
		t.Fatal("logits of an entry that asked for none")
	}
	if err := m.Decode(batch(0, 2, 'c')); err != nil {
		t.Fatal(err)
	}
	if row[batchingtest.NextByte('b')] == 10 || row[batchingtest.NextByte('c')] != 10 {
		t.Fatal("a view of the last step's row survived the next Decode")
	}
	if err := m.Decode(batch(0, 3, 'd')); err != nil { // the third row served: EOG
		t.Fatal(err)
	}
	if row, _ := m.Logits(0); row[256] != 10 {
		t.Fatal("WalkNext did not end after eogAfter rows")
	}
	if err := m.CopySeq(0, 1); err != nil || m.Held() != 2 {
		t.Fatalf("copy: %v, %d held", err, m.Held())
	}
	if err := m.TrimSeq(1, 9); err == nil {
		t.Fatal("trimmed past the end")
	}
	if err := m.TrimSeq(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := m.Decode(batch(1, 2, 'x')); err != nil {
		t.Fatalf("feeding after a trim: %v", err)
	}
	if err := m.ClearSeq(0); err != nil || m.Cleared(0) != 1 || m.Held() != 1 {
		t.Fatalf("clear: %v", err)
	}
	if got := len(m.Batches()); got != 5 {
		t.Fatalf("%d steps recorded, want 5", got)
	}
	if m.Piece('a') != "a" || m.Piece(256) != "" || !m.IsEOG(256) || m.IsEOG('a') || m.Size() != 300 {
		t.Fatal("vocabulary")
	}
	if got := batchingtest.WalkText('a', 3); got != "hov" {
		t.Fatalf("WalkText: %q", got)
	}
}

// Nil function fields have safe defaults, and set ones are called.
func TestFunctionFields(t *testing.T) {
	var e batchingtest.Engine
	if e.Decode(&batching.Batch{}) != nil || e.ClearSeq(0) != nil {
		t.Fatal("nil Decode or ClearSeq failed")
	}
	if _, err := e.Logits(0); err == nil {
		t.Fatal("nil LogitsFunc gave logits")
	}
	r := batchingtest.Reuser{Engine: &e}
	if r.TrimSeq(0, 1) != nil || r.CopySeq(0, 1) != nil {
		t.Fatal("nil TrimSeq or CopySeq failed")
	}
	boom := errors.New("boom")
	r.TrimSeqFunc = func(int32, int) error { return boom }
	r.CopySeqFunc = func(int32, int32) error { return boom }
	if r.TrimSeq(0, 1) != boom || r.CopySeq(0, 1) != boom {
		t.Fatal("set fields not called")
	}
	v := batchingtest.Vocab{N: 260}
	if v.Piece('z') != "z" || v.Piece(257) != "" || v.IsEOG(256) || v.Size() != 260 {
		t.Fatal("default vocabulary")
	}
	v.PieceFunc = func(int32) string { return "p" }
	v.IsEOGFunc = func(t int32) bool { return t == 256 }
	if v.Piece(1) != "p" || !v.IsEOG(256) {
		t.Fatal("vocabulary fields not called")
	}
}
