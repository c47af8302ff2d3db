package main

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/nextactiontest"
	"github.com/nextact/nextact/server"
)

// A session of 20 steps on pages that overflow --ctx (about 600-byte pages,
// a 2048-token context) completes every step under the history window;
// the same request sent statelessly, history resent, gets the same prompt
// and the same greedy answer; and dropped_tokens is the whole prompt's
// length (as the model's tokenizer counts it) minus the prompt's.
func TestSessionWindowOverflowsContext(t *testing.T) {
	ts := startServer(t, testConfig2k())
	m := ts.stack.model
	code, _, created := post(t, ts.URL+"/v1/sessions", map[string]any{"model": ts.modelID(), "format": "prompted"})
	if code != 200 {
		t.Fatalf("create: %d %v", code, created)
	}
	if h, _ := created["history"].(map[string]any); h["policy"] != "window" {
		t.Fatalf("session's history policy: %v", created)
	}
	id := created["id"].(string)
	rng := rand.New(rand.NewPCG(14, 1))
	var hist []nextaction.Step
	compactions, prevDropped := 0, 0
	for step := range 20 {
		page, _, _, _ := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 5, MaxInputs: 1, ApproxBytes: 600})
		got := actionAt(t, ts.URL+"/v1/sessions/"+id+"/steps", map[string]any{"page": page, "max_tokens": 48})
		want := actionAt(t, ts.URL+"/v1/actions/next", map[string]any{"model": ts.modelID(), "format": "prompted",
			"page": page, "history": hist, "max_tokens": 48})
		if got.Action != want.Action || got.Rationale != want.Rationale || got.Usage.PromptTokens != want.Usage.PromptTokens ||
			*got.Usage.History != *want.Usage.History {
			t.Fatalf("step %d: the session answered %+v %q (%+v), stateless %+v %q (%+v)", step,
				got.Action, got.Rationale, got.Usage, want.Action, want.Rationale, want.Usage)
		}
		u := got.Usage.History
		whole := wholePromptTokens(t, m, page, hist)
		if u.Steps != step || got.Usage.PromptTokens+u.DroppedTokens != whole || got.Usage.PromptTokens+48 > 2048 {
			t.Fatalf("step %d: usage %+v %+v, the whole prompt has %d tokens", step, got.Usage, *u, whole)
		}
		if u.DroppedTokens != prevDropped {
			compactions++
		}
		prevDropped = u.DroppedTokens
		hist = append(hist, nextaction.Step{Page: page, Action: got.Action, Rationale: got.Rationale})
	}
	if prevDropped == 0 {
		t.Fatal("the history never overflowed the context; the test does not exercise the window")
	}
	t.Logf("20 steps, dropped_tokens changed at %d of them, last %d", compactions, prevDropped)
}

// wholePromptTokens is the prompt of page after hist with nothing left
// out, tokenized by m's tokenizer.
func wholePromptTokens(t *testing.T, m *server.Model, page string, hist []nextaction.Step) int {
	t.Helper()
	msgs, err := nextaction.BuildPrompt(nextaction.FormatPrompted, nextaction.PromptInput{Page: page, History: hist})
	if err != nil {
		t.Fatal(err)
	}
	segs, err := m.Format.Render(msgs)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := models.TokenizeSegments(context.Background(), m.Tokenizer, segs)
	if err != nil {
		t.Fatal(err)
	}
	return len(toks)
}
