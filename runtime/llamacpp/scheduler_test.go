package llamacpp_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
)

// Greedy output of 8 concurrent requests through the real scheduler on the
// real engine equals each request run alone: identical and different prompts
// mixed, long prompts prefilled in chunks, requests joining mid-decode.
func TestBatchInvarianceOnRealEngine(t *testing.T) {
	e := open(t, 8, 512, 32)
	s, err := batching.New(e, e, batching.Config{Slots: 8, QueueSize: 16, StepTokens: 32, CtxPerSlot: 512}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	texts := []string{
		"hello",
		`<html><body><input name="search_input"/><button name="search_input.submit">Search</button></body></html> what next?`,
		"hello",
		"The shopper looks at the cart and decides",
		`{"type":"click","name":"columbia_shirt.view_product"}`,
		"hello",
		"refinements.customer_reviews.4_stars_up is a filter; a long prompt spans several chunks of the step budget of thirty-two tokens",
		"z",
	}
	reqs := make([]batching.Request, len(texts))
	for i, tx := range texts {
		p, err := e.Tokenize(tx, false)
		if err != nil {
			t.Fatal(err)
		}
		reqs[i] = batching.Request{Prompt: p, MaxTokens: 24}
	}
	do := func(r batching.Request) string { return generate(t, s, r) }
	alone := make([]string, len(reqs))
	for i, r := range reqs {
		alone[i] = do(r)
	}
	distinct := map[string]bool{}
	for _, a := range alone {
		distinct[a] = true
	}
	if len(distinct) < 3 {
		t.Fatalf("outputs barely depend on the prompt: %v", alone)
	}
	stepsBefore := s.Stats().Steps
	together := make([]string, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i >= 4 { // join while the first four decode
				time.Sleep(time.Duration(i-3) * 15 * time.Millisecond)
			}
			together[i] = do(r)
		}()
	}
	wg.Wait()
	for i := range reqs {
		if together[i] != alone[i] {
			t.Errorf("request %d: batched %s, alone %s", i, together[i], alone[i])
		}
	}
	soloSteps := 0
	for _, r := range reqs {
		soloSteps += (len(r.Prompt)+31)/32 + 24
	}
	if steps := s.Stats().Steps - stepsBefore; steps >= uint64(soloSteps) {
		t.Fatalf("%d steps for work that takes %d steps alone: nothing was batched", steps, soloSteps)
	}
}

// generate runs one request to its end and describes the outcome (text,
// finish reason, completion tokens). Safe from any goroutine.
func generate(t *testing.T, s *batching.Scheduler, r batching.Request) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := s.Submit(ctx, r)
	if err != nil {
		t.Error(err)
		return ""
	}
	c, err := h.Wait(ctx)
	if err != nil || c.Err != nil {
		t.Errorf("wait: %v %v", err, c.Err)
	}
	return fmt.Sprintf("%q/%v/%d", c.Text, c.Finish, c.Usage.CompletionTokens)
}
