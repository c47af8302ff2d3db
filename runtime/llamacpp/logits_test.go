package llamacpp_test

import (
	"testing"
	"unsafe"
)

// The zero-copy view agrees with the wrapper's copying GetLogitsIth and
// with llama_get_logits_ith's address for every entry that asked for
// logits, in a batch that mixes sequences and entries without logits. A
// change of llama.Context's layout (the view reads its unexported first
// field) or of llama.cpp's output order fails here.
func TestLogitsViewMatchesWrapper(t *testing.T) {
	e := open(t, 3, 64, 16)
	b := batch(
		entry{10, 0, 0, false}, entry{11, 1, 0, false}, entry{12, 2, 0, true},
		entry{20, 0, 1, true}, entry{21, 1, 1, true},
		entry{30, 0, 2, false}, entry{31, 1, 2, false}, entry{32, 2, 2, false}, entry{33, 3, 2, true},
	)
	if err := e.Decode(&b); err != nil {
		t.Fatal(err)
	}
	distinct := map[float32]bool{}
	for i := range b.Len() {
		view, err := e.Logits(i)
		if !b.Logits[i] {
			if err == nil {
				t.Fatalf("entry %d: a view of logits that were not requested", i)
			}
			continue
		}
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		want := e.WrapperLogits(i)
		if len(view) != len(want) || len(view) != e.Size() {
			t.Fatalf("entry %d: view of %d values, wrapper %d, vocabulary %d", i, len(view), len(want), e.Size())
		}
		for j := range want {
			if view[j] != want[j] {
				t.Fatalf("entry %d token %d: view %v, wrapper %v", i, j, view[j], want[j])
			}
		}
		if p := e.LogitsIthAddr(i); unsafe.Pointer(&view[0]) != p {
			t.Fatalf("entry %d: view at %p, llama_get_logits_ith at %p", i, &view[0], p)
		}
		distinct[view[0]] = true
	}
	if len(distinct) < 3 {
		t.Fatalf("the four rows are not four different rows: %v", distinct)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = e.Logits(8) }); allocs != 0 {
		t.Fatalf("Logits allocated %.0f times per call", allocs)
	}
}
