package llamacpp_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/runtime/llamacpp"
)

var (
	modelOnce sync.Once
	modelPath string
	modelErr  error
)

// testModel generates the embedded default model once per test binary.
func testModel(t testing.TB) string {
	t.Helper()
	modelOnce.Do(func() {
		dir, err := makeTempDir()
		if err != nil {
			modelErr = err
			return
		}
		modelPath, modelErr = models.EnsureDefault(dir)
	})
	if modelErr != nil {
		t.Fatal(modelErr)
	}
	return modelPath
}

func open(t testing.TB, slots, ctx, step int) *llamacpp.Engine {
	t.Helper()
	e, err := llamacpp.Open(llamacpp.Config{ModelPath: testModel(t), GPULayers: llamacpp.GPULayersAuto, Slots: slots, CtxPerSlot: ctx, StepTokens: step, Threads: 1, Deterministic: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func TestTokenizeRoundTrip(t *testing.T) {
	e := open(t, 1, 64, 16)
	text := `<button name="columbia_shirt.view_product">Columbia shirt</button> café`
	toks, err := e.Tokenize(text, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) == 0 || len(toks) >= len(text) {
		t.Fatalf("%d tokens for %d bytes: merges not used?", len(toks), len(text))
	}
	var b strings.Builder
	for _, tk := range toks {
		b.WriteString(e.Piece(tk))
	}
	if b.String() != text {
		t.Fatalf("round trip gave %q", b.String())
	}
	sp, err := e.Tokenize("<|eot_id|>", true)
	if err != nil || len(sp) != 1 || !e.IsEOG(sp[0]) {
		t.Fatalf("<|eot_id|> parsed as %v (%v), want one EOG control token", sp, err)
	}
	plain, _ := e.Tokenize("<|eot_id|>", false)
	if len(plain) < 2 {
		t.Fatalf("with parsing off, <|eot_id|> must stay text, got %v", plain)
	}
}

// Everything llama.cpp would abort on is refused in Go.
func TestDecodeValidatesBeforeC(t *testing.T) {
	e := open(t, 2, 32, 8)
	cases := []struct {
		name string
		b    batching.Batch
	}{
		{"empty", batching.Batch{}},
		{"token outside vocab", batch(entry{int32(e.Size()), 0, 0, true})},
		{"negative token", batch(entry{-1, 0, 0, true})},
		{"sequence outside slots", batch(entry{1, 0, 2, true})},
		{"position past context", batch(entry{1, 32, 0, true})},
		{"over step budget", batch(entry{1, 0, 0, false}, entry{1, 1, 0, false}, entry{1, 2, 0, false}, entry{1, 3, 0, false}, entry{1, 4, 0, false}, entry{1, 5, 0, false}, entry{1, 6, 0, false}, entry{1, 7, 0, false}, entry{1, 8, 0, true})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.Decode(&tc.b); err == nil {
				t.Fatal("Decode accepted an invalid batch")
			}
		})
	}
	if _, err := e.Logits(0); err == nil {
		t.Fatal("Logits of a failed decode returned a row")
	}
	if err := e.ClearSeq(5); err == nil {
		t.Fatal("ClearSeq accepted a sequence outside the slots")
	}
	ok := batch(entry{1, 0, 0, false}, entry{2, 1, 0, true})
	if err := e.Decode(&ok); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Logits(0); err == nil {
		t.Fatal("Logits returned a row that was not requested")
	}
	l, err := e.Logits(1)
	if err != nil || len(l) != e.Size() {
		t.Fatalf("logits: %d values, %v", len(l), err)
	}
}

type entry struct {
	tok, pos, seq int32
	logits        bool
}

func batch(es ...entry) batching.Batch {
	var b batching.Batch
	for _, x := range es {
		b.Add(x.tok, x.pos, x.seq, x.logits)
	}
	return b
}

func makeTempDir() (string, error) {
	return filepath.Abs(filepath.Join(tempRoot, "models"))
}

func TestSpecialTokens(t *testing.T) {
	e := open(t, 1, 64, 16)
	eot, _ := e.Tokenize("<|eot_id|>", true)
	hdr, _ := e.Tokenize("<|start_header_id|>", true)
	a, _ := e.Tokenize("a", false)
	sp := e.Special()
	if !sp[eot[0]] || !sp[hdr[0]] || sp[a[0]] {
		t.Fatalf("special flags: eot %v header %v 'a' %v", sp[eot[0]], sp[hdr[0]], sp[a[0]])
	}
	if len(e.Pieces()) != e.Size() || len(e.EOGTokens()) == 0 {
		t.Fatal("pieces or EOG tokens missing")
	}
}
