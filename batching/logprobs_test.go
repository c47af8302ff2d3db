package batching_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
)

// A token's logprobs are visible no later than its text, through Next as
// the stream reads it: at every chunk the text so far is a prefix of the
// tokens' pieces so far; at the end they are equal (no stop string), or
// the tokens run past the text a stop string cut.
func TestLogprobsArriveWithTheirText(t *testing.T) {
	m := hashModel(false)
	s, err := batching.New(slowed(m.Engine(), time.Millisecond), m, batching.Config{Slots: 4, QueueSize: 8, StepTokens: 16, CtxPerSlot: 256}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := batching.Request{Prompt: []int32{int32(40 + i), 50, 60}, MaxTokens: 40, Logprobs: true, TopLogprobs: 2}
			if i == 3 {
				r.Stop = []string{string(rune(32 + i))} // likely met early
			}
			h, err := s.Submit(context.Background(), r)
			if err != nil {
				t.Error(err)
				return
			}
			var text, pieces strings.Builder
			for {
				c, err := h.Next(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				text.WriteString(c.Text)
				for _, lp := range c.Tokens {
					pieces.WriteString(m.Piece(lp.ID))
					if len(lp.Top) != 2 || lp.Top[0].Logprob < lp.Top[1].Logprob {
						t.Errorf("top %+v", lp.Top)
					}
				}
				if !strings.HasPrefix(pieces.String(), text.String()) {
					t.Errorf("request %d: text %q ahead of its tokens %q", i, text.String(), pieces.String())
					return
				}
				if c.Done {
					if r.Stop == nil && (pieces.String() != text.String() || c.Usage.CompletionTokens != 40) {
						t.Errorf("request %d: tokens %q, text %q", i, pieces.String(), text.String())
					}
					return
				}
			}
		}()
	}
	wg.Wait()
}

// An echo request cancelled while its prompt is read ends cancelled, and
// the scheduler serves the next one; logprobs and prompt logprobs do not
// depend on how many goroutines sample a step.
func TestEchoCancelledAndWorkerInvariant(t *testing.T) {
	m := hashModel(true)
	gate := make(chan struct{})
	s, err := batching.New(gated(m.Engine(), gate), m, batching.Config{Slots: 2, QueueSize: 8, StepTokens: 8, CtxPerSlot: 512}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	long := make([]int32, 300)
	for i := range long {
		long[i] = int32(32 + i%90)
	}
	h, err := s.Submit(context.Background(), batching.Request{Prompt: long, EchoLogprobs: true, ScoreOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	gate <- struct{}{} // one step of the prompt
	h.Cancel()
	close(gate) // the steps run freely from now on
	if c, err := h.Wait(context.Background()); err != nil || c.Finish != batching.FinishCancelled {
		t.Fatalf("cancelled echo: %+v %v", c, err)
	}
	h, err = s.Submit(context.Background(), batching.Request{Prompt: long[:50], EchoLogprobs: true, ScoreOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := h.Wait(context.Background()); err != nil || c.Finish != batching.FinishLength || len(c.Prompt) != 49 {
		t.Fatalf("echo after a cancelled one: %+v %v", c, err)
	}

	results := func(workers int) []batching.Chunk {
		m := hashModel(true)
		s, err := batching.New(m.Engine(), m, batching.Config{Slots: 4, QueueSize: 8, StepTokens: 64, CtxPerSlot: 512, SampleWorkers: workers}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close(context.Background()) }()
		out := make([]batching.Chunk, 6)
		var wg sync.WaitGroup
		for i := range out {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seed := uint64(i)
				r := batching.Request{Prompt: long[i*20 : i*20+100], MaxTokens: 12, Sampling: batching.Sampling{Temperature: 1, Seed: &seed},
					Logprobs: true, TopLogprobs: i, EchoLogprobs: i%2 == 0}
				h, err := s.Submit(context.Background(), r)
				if err != nil {
					t.Error(err)
					return
				}
				out[i], _ = h.Wait(context.Background())
			}()
		}
		wg.Wait()
		return out
	}
	one, many := results(1), results(4)
	for i := range one {
		if len(one[i].Tokens) == 0 || (i%2 == 0) != (len(one[i].Prompt) == 99) {
			t.Fatalf("request %d: %d token, %d prompt logprobs", i, len(one[i].Tokens), len(one[i].Prompt))
		}
		if !reflect.DeepEqual(one[i].Tokens, many[i].Tokens) || !reflect.DeepEqual(one[i].Prompt, many[i].Prompt) {
			t.Fatalf("request %d: logprobs differ between 1 and 4 sampling workers", i)
		}
	}
}
