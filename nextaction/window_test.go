package nextaction_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
)

// countingTokenizer is byteTokenizer counting the bytes it is asked to
// tokenize.
type countingTokenizer struct {
	byteTokenizer
	bytes *atomic.Int64
}

func (c countingTokenizer) Tokenize(text string, special bool) ([]int32, error) {
	c.bytes.Add(int64(len(text)))
	return c.byteTokenizer.Tokenize(text, special)
}

// windowPlanner is a planner over byteTokenizer (one token a byte) with a
// context of ctxLen, 100 tokens kept for the answer by default.
func windowPlanner(t *testing.T, f models.ChatFormat, ctxLen int, tok models.Tokenizer) *nextaction.Planner {
	t.Helper()
	if tok == nil {
		tok = byteTokenizer{}
	}
	return newTestPlanner(t, nextaction.PlannerConfig{
		ChatFormat: f, Tokenizer: tok, DefaultFormat: nextaction.FormatPrompted,
		Limits: nextaction.Limits{MaxRationaleBytes: 20, MaxTextBytes: 10}, MaxPageBytes: 1 << 20, DefaultMaxTokens: 100,
		ContextLength: ctxLen,
	})
}

// shopPage is page i of a session: a link named p<i>.go and filler, about
// size bytes.
func shopPage(i, size int) string {
	head := fmt.Sprintf(`<div name="p%d"><a name="p%d.go">Go %d</a></div><p>`, i, i, i)
	return head + strings.Repeat(string(rune('a'+i%26)), max(0, size-len(head)-4)) + "</p>"
}

// shopSession is n steps on pages of the given sizes, each a click on its
// page's link.
func shopSession(sizes []int) (pages []string, steps []nextaction.Step) {
	for i, size := range sizes {
		pages = append(pages, shopPage(i, size))
		steps = append(steps, nextaction.Step{Page: pages[i], Action: nextaction.Action{Type: "click", Name: fmt.Sprintf("p%d.go", i)},
			Rationale: fmt.Sprintf("step %d", i)})
	}
	return pages, steps
}

// text is a byteTokenizer prompt as text.
func text(prompt []int32) string {
	var b strings.Builder
	for _, tok := range prompt {
		b.WriteString(piece(tok))
	}
	return b.String()
}

// expectedPrompt renders what the window's usage says the prompt holds:
// steps from u.StepsDropped on, the first u.PagesOmitted of them (with a
// page) with PageOmitted in place of the page.
func expectedPrompt(t *testing.T, f models.ChatFormat, format nextaction.Format, page string, hist []nextaction.Step, u nextaction.HistoryUsage) string {
	t.Helper()
	kept := append([]nextaction.Step(nil), hist[u.StepsDropped:]...)
	for i, omitted := 0, 0; omitted < u.PagesOmitted; i++ {
		if kept[i].Page != "" {
			kept[i].Page = nextaction.PageOmitted
			omitted++
		}
	}
	msgs, err := nextaction.BuildPrompt(format, nextaction.PromptInput{Page: page, History: kept})
	if err != nil {
		t.Fatal(err)
	}
	segs, err := f.Render(msgs)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := models.TokenizeSegments(context.Background(), byteTokenizer{}, segs)
	if err != nil {
		t.Fatal(err)
	}
	return text(toks)
}

// A session of 20 steps on pages that overflow the context: every step's
// prompt fits; it is the prompt the usage describes (oldest pages omitted;
// TestWindowTokenizesLinearly covers dropped steps); dropped_tokens is the whole prompt's length
// minus the prompt's; and consecutive steps share their prompts up to the
// previous current page except at the few steps where the window compacts,
// because compaction goes down to half the budget.
func TestWindowSessionOverflowingContext(t *testing.T) {
	t.Parallel()
	const ctxLen, reserve = 8192, 100
	p := windowPlanner(t, models.FormatLlama3, ctxLen, nil)
	whole := windowPlanner(t, models.FormatLlama3, 1<<20, nil)
	sizes := make([]int, 20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range sizes {
		sizes[i] = 300 + r.IntN(700)
	}
	pages, hist := shopSession(sizes)
	var prev string
	compactions, lastDropped, lastOmitted := 0, 0, 0
	for k := range pages {
		req := &nextaction.NextActionRequest{Page: pages[k], History: hist[:k]}
		pl, err := p.Plan(context.Background(), req)
		if err != nil {
			t.Fatalf("step %d: %v", k, err)
		}
		u := pl.History
		if len(pl.Prompt) > ctxLen-reserve || u.Policy != nextaction.HistoryWindow || u.Steps != k {
			t.Fatalf("step %d: prompt of %d tokens, usage %+v", k, len(pl.Prompt), u)
		}
		got := text(pl.Prompt)
		if want := expectedPrompt(t, models.FormatLlama3, nextaction.FormatPrompted, pages[k], hist[:k], u); got != want {
			t.Fatalf("step %d: usage %+v but the prompt is\n%s\nwant\n%s", k, u, got, want)
		}
		full, err := whole.Plan(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if full.History.DroppedTokens != 0 || u.DroppedTokens != len(full.Prompt)-len(pl.Prompt) {
			t.Fatalf("step %d: dropped %d tokens, the prompt is %d shorter than the whole one (whole: %+v)",
				k, u.DroppedTokens, len(full.Prompt)-len(pl.Prompt), full.History)
		}
		if u.StepsDropped < lastDropped || u.StepsDropped+u.PagesOmitted < lastDropped+lastOmitted {
			t.Fatalf("step %d: the window went back: %+v after %d dropped, %d omitted", k, u, lastDropped, lastOmitted)
		}
		if k > 0 {
			// The previous prompt up to the end of its current page.
			shared := prev[:strings.LastIndex(prev, pages[k-1])+len(pages[k-1])]
			if !strings.HasPrefix(got, shared) {
				compactions++
				if u.StepsDropped == lastDropped && u.PagesOmitted+u.StepsDropped == lastOmitted+lastDropped {
					t.Fatalf("step %d: the prefix changed without a compaction: %+v", k, u)
				}
			}
		}
		prev, lastDropped, lastOmitted = got, u.StepsDropped, u.PagesOmitted
	}
	if lastOmitted == 0 || compactions == 0 || compactions > len(pages)/4 {
		t.Fatalf("%d compactions in %d steps, %d pages omitted at the end: want some, and few", compactions, len(pages), lastOmitted)
	}
	t.Logf("%d compactions in %d steps; the last step dropped %d steps and omitted %d pages", compactions, len(pages), lastDropped, lastOmitted)
}

// Every format keeps every prompt whose current page fits alone inside the
// context (the window's estimate is exact except for Mistral's folded
// system prompt, which it corrects), and a page that does not fit alone is
// the only context_length_exceeded.
func TestWindowFitsEveryFormat(t *testing.T) {
	t.Parallel()
	for _, f := range []models.ChatFormat{models.FormatLlama3, models.FormatChatML, models.FormatMistral} {
		for _, format := range []nextaction.Format{nextaction.FormatPrompted, nextaction.FormatFinetuned} {
			t.Run(string(f)+"/"+string(format), func(t *testing.T) {
				t.Parallel()
				r := rand.New(rand.NewPCG(uint64(len(f)), uint64(len(format))))
				compacted := 0
				for trial := range 40 {
					ctxLen := 1500 + r.IntN(3000)
					p := windowPlanner(t, f, ctxLen, nil)
					sizes := make([]int, r.IntN(12))
					for i := range sizes {
						sizes[i] = 20 + r.IntN(1200)
					}
					_, hist := shopSession(sizes)
					for i := range hist {
						if r.IntN(4) == 0 {
							hist[i].Page = "" // sent without its page
						}
					}
					page := shopPage(99, 50+r.IntN(2500))
					pol := &nextaction.HistoryPolicy{MaxTokens: []int{0, 0, 300}[trial%3]}
					req := &nextaction.NextActionRequest{Page: page, History: hist, Format: string(format), HistoryPolicy: pol}
					pl, err := p.Plan(context.Background(), req)
					alone, aloneErr := p.Plan(context.Background(), &nextaction.NextActionRequest{Page: page, Format: string(format)})
					if (err != nil) != (aloneErr != nil) {
						t.Fatalf("trial %d: with history %v, alone %v", trial, err, aloneErr)
					}
					if err != nil {
						var re *nextaction.RequestError
						if !errors.As(err, &re) || re.Code != "context_length_exceeded" {
							t.Fatalf("trial %d: %v", trial, err)
						}
						continue
					}
					if len(pl.Prompt) > ctxLen-100 && len(alone.Prompt) <= ctxLen-100 {
						t.Fatalf("trial %d: prompt of %d tokens over %d-100 (%+v)", trial, len(pl.Prompt), ctxLen, pl.History)
					}
					if n := pol.MaxTokens; n > 0 && len(pl.Prompt)-len(alone.Prompt) > n+20 {
						t.Fatalf("trial %d: history of about %d tokens over max_tokens %d", trial, len(pl.Prompt)-len(alone.Prompt), n)
					}
					if pl.History.DroppedTokens > 0 {
						compacted++
					}
					if pl.History.StepsDropped > len(hist) || pl.History.PagesOmitted > len(hist)-pl.History.StepsDropped || pl.History.DroppedTokens < 0 {
						t.Fatalf("trial %d: usage %+v of %d steps", trial, pl.History, len(hist))
					}
				}
				if compacted < 5 {
					t.Fatalf("only %d of 40 trials compacted their history", compacted)
				}
			})
		}
	}
}

// The strict policy compacts nothing: a prompt over the context, or a
// history over its max_tokens, is a 400. Unknown policies are named.
func TestWindowStrictAndRefusals(t *testing.T) {
	t.Parallel()
	p := windowPlanner(t, models.FormatLlama3, 3000, nil)
	_, hist := shopSession([]int{800, 800, 800})
	page := shopPage(9, 400)
	for _, tt := range []struct {
		name  string
		req   nextaction.NextActionRequest
		field string
		code  string
	}{
		{"strict over the context", nextaction.NextActionRequest{Page: page, History: hist, HistoryPolicy: &nextaction.HistoryPolicy{Policy: "strict"}},
			"page", "context_length_exceeded"},
		{"strict over max_tokens", nextaction.NextActionRequest{Page: page, History: hist[:1], HistoryPolicy: &nextaction.HistoryPolicy{Policy: "Strict", MaxTokens: 500}},
			"history", "context_length_exceeded"},
		{"window with a page that cannot fit", nextaction.NextActionRequest{Page: shopPage(9, 2950), History: hist},
			"page", "context_length_exceeded"},
		{"unknown policy", nextaction.NextActionRequest{Page: page, HistoryPolicy: &nextaction.HistoryPolicy{Policy: "lru"}},
			"history_policy.policy", ""},
		{"negative max_tokens", nextaction.NextActionRequest{Page: page, HistoryPolicy: &nextaction.HistoryPolicy{MaxTokens: -1}},
			"history_policy.max_tokens", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := p.Plan(context.Background(), &tt.req)
			wantPlanErr(t, err, tt.field, tt.code, false)
		})
	}
	// The same history under the window fits, and strict within bounds
	// sends it whole.
	pl, err := p.Plan(context.Background(), &nextaction.NextActionRequest{Page: page, History: hist})
	if err != nil || pl.History.PagesOmitted == 0 {
		t.Fatalf("window: %v %+v", err, pl)
	}
	pl, err = p.Plan(context.Background(), &nextaction.NextActionRequest{Page: page, History: hist[:1],
		HistoryPolicy: &nextaction.HistoryPolicy{Policy: "strict"}})
	if err != nil || pl.History != (nextaction.HistoryUsage{Policy: "strict", Steps: 1}) {
		t.Fatalf("strict: %v %+v", err, pl)
	}
}

// Fitting a history tokenizes each message about once: the bytes handed
// to the tokenizer stay within a small multiple of the prompt's, however
// many steps the window has to cut (a per-trial tokenization of the whole
// prompt would grow with the square of the steps).
func TestWindowTokenizesLinearly(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	p := windowPlanner(t, models.FormatLlama3, 4096, countingTokenizer{bytes: &n})
	sizes := make([]int, 200)
	for i := range sizes {
		sizes[i] = 1000
	}
	_, hist := shopSession(sizes)
	page := shopPage(999, 1000)
	base := n.Load()
	pl, err := p.Plan(context.Background(), &nextaction.NextActionRequest{Page: page, History: hist})
	if err != nil {
		t.Fatal(err)
	}
	rendered := 0
	for _, s := range hist {
		rendered += len(s.Page) + len(s.Rationale) + 60
	}
	if got := n.Load() - base; got > int64(2*rendered) {
		t.Fatalf("tokenized %d bytes for a history of about %d", got, rendered)
	}
	if pl.History.StepsDropped == 0 {
		t.Fatalf("usage %+v: the history should not fit", pl.History)
	}
	if got, want := text(pl.Prompt), expectedPrompt(t, models.FormatLlama3, nextaction.FormatPrompted, page, hist, pl.History); got != want {
		t.Fatalf("usage %+v but the prompt is\n%s\nwant\n%s", pl.History, got, want)
	}
}
