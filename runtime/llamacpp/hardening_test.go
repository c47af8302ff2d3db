package llamacpp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/fs/ggml"
	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/runtime/llamacpp"
)

// overForcer is a constraint that forces a literal run longer than the
// context leaves: the one way left to push a sequence toward a position its
// slot does not have once max_tokens is checked.
type overForcer struct {
	run  []int32
	done bool
}

func (c *overForcer) Mask([]float32, int) error { return nil }
func (c *overForcer) Accept(int32) (bool, error) {
	c.done = true
	return true, nil
}
func (c *overForcer) MinTokens() int { return 1 }
func (c *overForcer) Forced() []int32 {
	f := c.run
	c.run = nil
	return f
}
func (c *overForcer) Done() bool { return c.done }

// A sequence that reaches its slot's context end finishes with
// FinishLength before it is planned; the request decoding beside it is not
// failed with it. (Before the fix the step carried position >= ctx, the
// engine refused it, and every sequence in the step ended with an error.)
func TestContextEndEndsOnlyThatSequence(t *testing.T) {
	const ctxLen = 64
	e := open(t, 2, ctxLen, 32)
	s, err := batching.New(e, e, batching.Config{Slots: 2, QueueSize: 4, StepTokens: 32, CtxPerSlot: ctxLen}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prompt, err := e.Tokenize("the shopper looks at the cart", false)
	if err != nil {
		t.Fatal(err)
	}
	// Greedy, long enough to be decoding when the other one is planned.
	mate, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: 40})
	if err != nil {
		t.Fatal(err)
	}
	run := make([]int32, 2*ctxLen)
	for i := range run {
		run[i] = prompt[i%len(prompt)]
	}
	over, err := s.Submit(ctx, batching.Request{Prompt: prompt, Constraint: &overForcer{run: run}})
	if err != nil {
		t.Fatal(err)
	}
	oc, err := over.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if oc.Finish != batching.FinishLength || oc.Err != nil {
		t.Errorf("the sequence past its context: finish %v, err %v; want length, no error", oc.Finish, oc.Err)
	}
	mc, err := mate.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if mc.Finish != batching.FinishLength || mc.Err != nil || mc.Usage.CompletionTokens != 40 {
		t.Errorf("its step-mate: finish %v, err %v, %d tokens; want length, no error, 40 tokens", mc.Finish, mc.Err, mc.Usage.CompletionTokens)
	}
	// The scheduler keeps serving.
	h, err := s.Submit(ctx, batching.Request{Prompt: prompt, MaxTokens: 4})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := h.Wait(ctx); err != nil || c.Err != nil || c.Usage.CompletionTokens != 4 {
		t.Fatalf("after: %+v %v", c, err)
	}
}

// max_tokens near the integer maximum is refused, never wrapped into a
// small or negative reservation.
func TestMaxTokensOverflowRefused(t *testing.T) {
	e := open(t, 1, 64, 16)
	s, err := batching.New(e, e, batching.Config{Slots: 1, QueueSize: 1, StepTokens: 16, CtxPerSlot: 64}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	for _, n := range []int{math.MaxInt, math.MaxInt - 3, math.MaxInt64 / 2} {
		_, err := s.Submit(context.Background(), batching.Request{Prompt: []int32{1, 2, 3, 4}, MaxTokens: n})
		var re *batching.RequestError
		if !errors.As(err, &re) || re.Field != "max_tokens" {
			t.Errorf("MaxTokens %d: %v, want a max_tokens RequestError", n, err)
		}
	}
	if st := s.Stats(); st.ReservedTokens != 0 || st.Running+st.Waiting != 0 {
		t.Fatalf("refused requests left a reservation: %+v", st)
	}
	var adm admission.Config
	d := adm.Decide(math.MaxInt, admission.Load{Slots: 1, QueueSize: 1, ReservedTokens: 10, CapacityTokens: 64}, admission.GPUSample{}, false, time.Now())
	if d.Reason != admission.ReasonKVFull {
		t.Fatalf("Decide(MaxInt) = %+v, want kv_full", d)
	}
}

// Text with many special-token texts tokenizes in pieces, to the same
// tokens as one llama.cpp call (whose special-token split is quadratic in
// the occurrences: "<|eot_id|>" x 100k took 38 s on c74a939), in both
// parse modes, with text, whitespace and partial markers between them.
func TestTokenizeManySpecialsSameTokens(t *testing.T) {
	e := open(t, 1, 64, 16)
	rng := rand.New(rand.NewPCG(4, 4))
	parts := []string{"<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>", " ", "\n\n", "user", "<|eot", "id|>", "<", "|>", "café", "x y"}
	for round := range 4 {
		var b strings.Builder
		for range 700 + round*300 {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		text := b.String()
		for _, parse := range []bool{true, false} {
			got, err := e.Tokenize(text, parse)
			if err != nil {
				t.Fatal(err)
			}
			want, err := e.TokenizeWhole(text, parse)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, parseSpecial %v: %d tokens, one call gives %d", round, parse, len(got), len(want))
			}
		}
	}
	eot, _ := e.Tokenize("<|eot_id|>", true)
	got, err := e.Tokenize(strings.Repeat("<|eot_id|>", 100_000), true)
	if err != nil || len(got) != 100_000 || got[0] != eot[0] || got[len(got)-1] != eot[0] {
		t.Fatalf("100k <|eot_id|>: %d tokens, %v", len(got), err)
	}
}

// BenchmarkTokenizeSpecials compares one llama.cpp call with the cut
// tokenization on a prompt of n control tokens.
//
//	go test -run '^$' -bench TokenizeSpecials ./runtime/llamacpp
func BenchmarkTokenizeSpecials(b *testing.B) {
	e, err := llamacpp.Open(llamacpp.Config{ModelPath: testModel(b), Slots: 1, CtxPerSlot: 64, StepTokens: 16, Threads: 1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, n := range []int{1_000, 10_000} {
		text := strings.Repeat("<|eot_id|>", n)
		b.Run(fmt.Sprintf("one-call/%d", n), func(b *testing.B) {
			for range b.N {
				_, _ = e.TokenizeWhole(text, true)
			}
		})
		b.Run(fmt.Sprintf("cut/%d", n), func(b *testing.B) {
			for range b.N {
				_, _ = e.Tokenize(text, true)
			}
		})
	}
}

// loadModelEnv makes the test binary load one model file and exit: 0 when
// it loads, 3 when Open reports an error. A llama.cpp abort is a signal.
const loadModelEnv = "NEXTACT_TEST_LOAD_MODEL"

func loadOnly(path string) int {
	e, err := llamacpp.Open(llamacpp.Config{ModelPath: path, Slots: 1, CtxPerSlot: 64, StepTokens: 16, Threads: 1}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 3
	}
	e.Close()
	return 0
}

// mutants are malformed copies of a loadable model: the ones named are
// what llama.cpp aborts on (a duplicate token: GGML_ASSERT in the
// vocabulary loader; a zero dimension: a division by zero in gguf.cpp),
// the rest random byte changes in the metadata and truncations.
func mutants(t *testing.T, valid []byte) map[string][]byte {
	t.Helper()
	g, err := ggml.Decode(bytes.NewReader(valid), 0)
	if err != nil {
		t.Fatal(err)
	}
	header := int(g.Tensors().Offset)
	out := map[string][]byte{}
	// A duplicate token: two tokens of one length, the second made a
	// copy of the first.
	key := append(binary.LittleEndian.AppendUint64(nil, uint64(len("tokenizer.ggml.tokens"))), "tokenizer.ggml.tokens"...)
	at := bytes.Index(valid, key)
	if at < 0 {
		t.Fatal("no tokenizer.ggml.tokens in the model")
	}
	p := at + len(key) + 4 + 4 + 8 // type, element type, count
	type span struct{ start, n int }
	seen := map[int]span{}
	for i := 0; i < 300; i++ {
		n := int(binary.LittleEndian.Uint64(valid[p:]))
		if prev, ok := seen[n]; ok {
			m := bytes.Clone(valid)
			copy(m[p+8:p+8+n], valid[prev.start:prev.start+n])
			out["duplicate token"] = m
			break
		}
		seen[n] = span{p + 8, n}
		p += 8 + n
	}
	// A zero dimension in a tensor info.
	name := append(binary.LittleEndian.AppendUint64(nil, uint64(len("token_embd.weight"))), "token_embd.weight"...)
	if at = bytes.Index(valid[:header], name); at < 0 {
		t.Fatal("no token_embd.weight tensor info")
	}
	m := bytes.Clone(valid)
	binary.LittleEndian.PutUint64(m[at+len(name)+4+8:], 0) // ne[1]
	out["zero dimension"] = m
	m = bytes.Clone(valid)
	binary.LittleEndian.PutUint32(m[at+len(name)+4+16:], 26) // type I32
	out["integer weights"] = m
	out["truncated metadata"] = valid[:header/2]
	out["truncated data"] = valid[:header+(len(valid)-header)/2]
	rng := rand.New(rand.NewPCG(10, 10))
	for i := range 40 {
		m := bytes.Clone(valid)
		for range 1 + rng.IntN(3) {
			m[8+rng.IntN(header-8)] = byte(rng.IntN(256))
		}
		out[fmt.Sprintf("random %d", i)] = m
	}
	return out
}

// A malformed model file is an error, never an abort in C: Inspect (which
// Open runs first) rejects what llama.cpp would abort on, and whatever it
// accepts loads or fails cleanly in a separate process. On c74a939 the
// duplicate token and the zero dimension passed Inspect and killed the
// loading process.
func TestMalformedModelsNeverAbort(t *testing.T) {
	valid, err := os.ReadFile(testModel(t))
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	loads := 0
	for name, data := range mutants(t, valid) {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".gguf")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, ierr := models.Inspect(path)
		if !strings.HasPrefix(name, "random") && name != "truncated data" && ierr == nil {
			t.Errorf("%s: Inspect accepted it", name)
		}
		if ierr != nil || loads >= 8 {
			continue
		}
		loads++
		cmd := exec.Command(exe, "-test.run", "^$")
		cmd.Env = append(os.Environ(), loadModelEnv+"="+path)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 3) {
			t.Errorf("%s: loading it ended the process: %v\n%s", name, err, tail(out))
		}
	}
	t.Logf("%d mutants loaded in a child process", loads)
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}
