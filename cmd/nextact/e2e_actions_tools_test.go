package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/sourcegraph/conc/pool"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/client"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// The tools format on the real engine in each chat format: with a history
// rendered as tool calls and tool results, at temperature 1.0, every
// answer is an action of the current page (the decoder restricts the
// call's name to the page's targets), the usage reports the strict
// history policy, and the same request gets the same answer (the prompt
// is a function of the request).
func TestNextActionToolsFormatOnRealEngine(t *testing.T) {
	for _, format := range []string{"llama3", "chatml", "mistral"} {
		t.Run(format, func(t *testing.T) {
			c := testConfig()
			c.ChatFormat, c.Ctx = format, 4096
			ts := startServer(t, c)
			cl := client.New(ts.URL)
			rng := rand.New(rand.NewPCG(5, 5))
			var history []nextaction.Step
			temp := 1.0
			for i := range 6 {
				page, cs, ins, _ := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 8, MaxInputs: 2, ApproxBytes: -1})
				seed := uint64(i)
				req := nextaction.NextActionRequest{Model: ts.modelID(), Page: page, History: history, Format: "tools", Temperature: &temp, Seed: &seed, MaxTokens: 200}
				res, err := cl.NextAction(context.Background(), req)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				a := res.Action
				switch a.Type {
				case nextaction.TypeClick:
					if !set(cs)[a.Name] {
						t.Fatalf("step %d: click on %q, not a clickable of the page", i, a.Name)
					}
				case nextaction.TypeTypeAndSubmit:
					if !set(ins)[a.Name] || a.Text == "" || len(a.Text) > c.MaxTextBytes {
						t.Fatalf("step %d: type_and_submit %q into %q", i, a.Text, a.Name)
					}
				case nextaction.TypeTerminate:
				default:
					t.Fatalf("step %d: %+v", i, a)
				}
				if h := res.Usage.History; h == nil || h.Policy != nextaction.HistoryStrict || h.Steps != len(history) {
					t.Fatalf("step %d: history usage %+v", i, res.Usage.History)
				}
				again, err := cl.NextAction(context.Background(), req)
				if err != nil || again.Action != a || again.Rationale != res.Rationale {
					t.Fatalf("step %d: the same request answered %+v (%v), then %+v", i, a, err, again.Action)
				}
				if len(history) > 0 { // only the last step keeps its page: the context holds the steps
					history[len(history)-1].Page = ""
				}
				history = append(history, nextaction.Step{Page: page, Action: a, Rationale: res.Rationale})
			}
			if format != "llama3" {
				return
			}
			// Generated pages at three temperatures, concurrently: every
			// answer is an action of its page, and every type comes up.
			var types sync.Map
			p := pool.New().WithErrors().WithMaxGoroutines(8)
			for i := range 45 {
				page, cs, ins, conts := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 12, MaxInputs: 3, ApproxBytes: -1})
				temp, seed := []float64{0, 0.7, 1.5}[i%3], uint64(100+i)
				p.Go(func() error {
					res, err := cl.NextAction(context.Background(), nextaction.NextActionRequest{Model: ts.modelID(), Page: page, Format: "tools", Temperature: &temp, Seed: &seed, MaxTokens: 200})
					if err != nil {
						return err
					}
					a := res.Action
					types.Store(a.Type, true)
					if set(conts)[a.Name] || a.Type == nextaction.TypeClick && !set(cs)[a.Name] || a.Type == nextaction.TypeTypeAndSubmit && !set(ins)[a.Name] {
						return fmt.Errorf("%+v on a page with clickables %v, inputs %v", a, cs, ins)
					}
					return nil
				})
			}
			if err := p.Wait(); err != nil {
				t.Fatal(err)
			}
			for _, typ := range []string{nextaction.TypeClick, nextaction.TypeTypeAndSubmit, nextaction.TypeTerminate} {
				if _, ok := types.Load(typ); !ok {
					t.Errorf("no %s in 45 answers: the decoder's tools are too narrow", typ)
				}
			}
		})
	}
}
