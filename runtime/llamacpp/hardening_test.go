package llamacpp_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
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
	var adm batching.AdmissionConfig
	d := adm.Decide(math.MaxInt, batching.Load{Slots: 1, QueueSize: 1, ReservedTokens: 10, CapacityTokens: 64}, batching.GPUSample{}, false, time.Now())
	if d.Reason != batching.ReasonKVFull {
		t.Fatalf("Decide(MaxInt) = %+v, want kv_full", d)
	}
}
