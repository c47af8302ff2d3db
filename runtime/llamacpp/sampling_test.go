package llamacpp_test

import (
	"context"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/nextaction"
)

// On the real engine, with real next-action and JSON-schema constraints,
// sampling a step's sequences on several goroutines gives exactly the
// tokens one goroutine gives, for every sampling mode (seeded).
func TestParallelSamplingMatchesSerialOnRealEngine(t *testing.T) {
	e := open(t, 8, 512, 64)
	vocab, err := nextaction.NewVocab(e.Pieces(), e.Special(), e.EOGTokens())
	if err != nil {
		t.Fatal(err)
	}
	page, err := nextaction.ParsePage(`<div><input name="search_input"/><a name="columbia_shirt.view_product">Columbia Shirt</a><button name="cart.buy_now">Buy now</button></div>`)
	if err != nil {
		t.Fatal(err)
	}
	grammars := nextaction.NewGrammarCache(0)
	action, err := grammars.Action(page, nextaction.FormatPrompted, nextaction.Limits{MaxRationaleBytes: 60, MaxTextBytes: 20})
	if err != nil {
		t.Fatal(err)
	}
	schema, err := grammars.Schema([]byte(`{"type":"object","properties":{"name":{"type":"string","maxLength":12},"n":{"type":"integer"}},"required":["name","n"]}`), nextaction.DefaultSchemaLimits)
	if err != nil {
		t.Fatal(err)
	}
	seed := func(x uint64) *uint64 { return &x }
	modes := []batching.Sampling{{}, {Temperature: 1.2}, {Temperature: 1, TopK: 20}, {Temperature: 1, TopP: 0.8}, {Temperature: 0.7, TopK: 40, TopP: 0.95}}
	texts := []string{"The shopper looks at the cart and", `{"type":"click","name":"`, "hello"}
	// Every engine opened here loads the same model: tokens and the
	// vocabulary index are the same in each.
	reqs := func() []batching.Request {
		var rs []batching.Request
		for m, p := range modes {
			for k, tx := range texts {
				prompt, err := e.Tokenize(tx, false)
				if err != nil {
					t.Fatal(err)
				}
				p.Seed = seed(uint64(10*m + k))
				rs = append(rs, batching.Request{Prompt: prompt, MaxTokens: 16, Sampling: p})
				switch k {
				case 0:
					rs = append(rs, batching.Request{Prompt: prompt, MaxTokens: 96, Sampling: p, Constraint: nextaction.NewByteConstraint(vocab, action)})
				case 1:
					rs = append(rs, batching.Request{Prompt: prompt, MaxTokens: 64, Sampling: p, Constraint: nextaction.NewByteConstraint(vocab, schema)})
				}
			}
		}
		return rs
	}
	run := func(workers int) []string {
		e := open(t, 8, 512, 64) // a fresh engine: a scheduler starts from empty KV
		s, err := batching.New(e, e, batching.Config{Slots: 8, QueueSize: 64, StepTokens: 64, CtxPerSlot: 512, SampleWorkers: workers}, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = s.Close(context.Background()) }()
		rs := reqs()
		out := make([]string, len(rs))
		var wg sync.WaitGroup
		for i, r := range rs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i] = generate(t, s, r)
			}()
		}
		wg.Wait()
		return out
	}
	serial := run(1)
	distinct := map[string]bool{}
	for _, o := range serial {
		distinct[o] = true
	}
	if len(distinct) < len(serial)/2 {
		t.Fatalf("outputs barely differ: %d distinct of %d", len(distinct), len(serial))
	}
	parallel := run(4)
	for i := range serial {
		if parallel[i] != serial[i] {
			t.Errorf("request %d: 4 workers %s, serial %s", i, parallel[i], serial[i])
		}
	}
}
