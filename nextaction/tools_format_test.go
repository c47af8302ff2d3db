package nextaction_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
)

// The tools format in each chat format: the prompt renders the action
// tools and a history step as a call in the format's convention, and
// random decodes under the plan's constraint always answer an action of
// the current page (names restricted to its targets), parsed back with
// its rationale.
func TestPlannerToolsFormat(t *testing.T) {
	t.Parallel()
	page := `<div name="box"><a name="box.view">View</a><button name="box.buy_now">Buy</button></div><input name="q">`
	for _, f := range []models.ChatFormat{models.FormatLlama3, models.FormatChatML, models.FormatMistral} {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			p := newTestPlanner(t, nextaction.PlannerConfig{
				ChatFormat: f, Tokenizer: byteTokenizer{}, DefaultFormat: nextaction.FormatPrompted,
				Limits: nextaction.Limits{MaxRationaleBytes: 30, MaxTextBytes: 12}, MaxPageBytes: 300, DefaultMaxTokens: 100,
				ContextLength: 8192,
			})
			v := plannerVocab(t)
			req := &nextaction.NextActionRequest{Page: page, Format: "tools", MaxTokens: 120, History: []nextaction.Step{
				{Page: `<a name="home">Home</a>`, Action: nextaction.Action{Type: "click", Name: "home"}, Rationale: "I start"},
			}}
			pl, err := p.Plan(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			var prompt strings.Builder
			for _, tok := range pl.Prompt {
				prompt.WriteString(piece(tok))
			}
			if !strings.HasSuffix(prompt.String(), f.CallPrefix()) {
				t.Fatalf("prompt does not end with the call prefix %q:\n%s", f.CallPrefix(), prompt.String())
			}
			for _, want := range []string{"type_and_submit", `"name": "home"`, "I start", page} {
				if !strings.Contains(prompt.String(), want) {
					t.Fatalf("prompt lacks %q:\n%s", want, prompt.String())
				}
			}
			if h := pl.History; h.Policy != nextaction.HistoryStrict || h.Steps != 1 {
				t.Fatalf("history usage %+v", h)
			}
			// A history bound under the history's tokens is a 400; one above
			// them is not (the tools format renders the history whole).
			tight := *req
			tight.HistoryPolicy = &nextaction.HistoryPolicy{MaxTokens: 5}
			_, err = p.Plan(context.Background(), &tight)
			wantPlanErr(t, err, "history", "context_length_exceeded", false)
			tight.HistoryPolicy = &nextaction.HistoryPolicy{MaxTokens: 5000}
			if _, err := p.Plan(context.Background(), &tight); err != nil {
				t.Fatalf("a history under its bound: %v", err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			seen := map[string]bool{}
			for range 60 {
				pl, err := p.Plan(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				decode(t, v, pl.Constraint, rng, pl.MaxTokens)
				resp, err := pl.Answer(nextaction.Usage{}, nextaction.Timing{})
				if err != nil {
					t.Fatal(err)
				}
				seen[resp.Action.Type] = true
				if resp.Action.Type == "click" && resp.Action.Name == "box" {
					t.Fatalf("a click on the container: %+v", resp.Action)
				}
			}
			if len(seen) != 3 {
				t.Fatalf("action types drawn: %v", seen)
			}
		})
	}
}

// plannerVocab is newTestPlanner's vocabulary.
func plannerVocab(t *testing.T) *nextaction.Vocab {
	pieces := make([]string, 256+len(controls))
	special := make([]bool, len(pieces))
	for i := range pieces {
		pieces[i] = piece(int32(i))
		special[i] = i >= 256
	}
	v, err := nextaction.NewVocab(pieces, special, []int32{256 + 3})
	if err != nil {
		t.Fatal(err)
	}
	return v
}
