package nextaction_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
)

// byteTokenizer makes every byte a token and control-token text one
// control token each, like a byte-level BPE without merges.
type byteTokenizer struct{}

var controls = []string{"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
	"<|im_start|>", "<|im_end|>", "</s>", "<s>", "[INST]", "[/INST]"}

func (byteTokenizer) Tokenize(text string, special bool) ([]int32, error) {
	var out []int32
	for i := 0; i < len(text); {
		if special {
			matched := false
			for k, c := range controls {
				if strings.HasPrefix(text[i:], c) {
					out = append(out, int32(256+k))
					i += len(c)
					matched = true
					break
				}
			}
			if matched {
				continue
			}
		}
		out = append(out, int32(text[i]))
		i++
	}
	return out, nil
}

func testPlanner(t *testing.T, ctxLen int) *nextaction.Planner {
	t.Helper()
	return newTestPlanner(t, nextaction.PlannerConfig{
		ChatFormat: models.FormatLlama3, Tokenizer: byteTokenizer{}, DefaultFormat: nextaction.FormatPrompted,
		Limits: nextaction.Limits{MaxRationaleBytes: 20, MaxTextBytes: 10}, MaxPageBytes: 300, DefaultMaxTokens: 100,
		ContextLength: ctxLen, MaxMessages: 6,
	})
}

// newTestPlanner builds cfg's planner over byteTokenizer's vocabulary
// (cfg.Grammars is filled in).
func newTestPlanner(t *testing.T, cfg nextaction.PlannerConfig) *nextaction.Planner {
	t.Helper()
	v := plannerVocab(t)
	g, err := nextaction.NewGrammars(v, nextaction.NewGrammarCache(0), nextaction.SchemaLimits{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Grammars = g
	p, err := nextaction.NewPlanner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// piece is the text of a token of byteTokenizer's vocabulary.
func piece(tok int32) string {
	if tok < 256 {
		return string([]byte{byte(tok)})
	}
	return controls[tok-256]
}

// feed runs a plan's constraint over out, as the scheduler would with a
// model that writes out one byte a token (0 stands for the end of turn):
// forced tokens whose text is next in out are skipped over in it.
func feed(t *testing.T, pl *nextaction.Plan, out string, eot int32) {
	t.Helper()
	c := pl.Constraint
	remaining, i := pl.MaxTokens, 0
	skipForced := func() {
		for _, f := range c.Forced() {
			remaining--
			if p := piece(f); strings.HasPrefix(out[i:], p) {
				i += len(p)
			}
		}
	}
	skipForced()
	for ; i < len(out) && !c.Done(); skipForced() {
		tok := int32(out[i])
		if out[i] == 0 {
			tok = eot
		}
		if !c.Allows(tok, remaining) {
			t.Fatalf("byte %d (%q) of %q not allowed", i, out[i], out)
		}
		if _, err := c.Accept(tok); err != nil {
			t.Fatal(err)
		}
		remaining--
		i++
	}
	if !c.Done() {
		t.Fatalf("%q did not complete the answer", out)
	}
}

func TestPlannerPlansAndAnswersBothFormats(t *testing.T) {
	t.Parallel()
	p := testPlanner(t, 4096)
	page := `<div name="box"><a name="box.view">View</a></div><input name="q">`
	for _, tt := range []struct {
		format, out, rationale string
		action                 nextaction.Action
	}{
		{"prompted", `{"rationale":"I look","action":{"type":"click","name":"box.view"}}`, "I look",
			nextaction.Action{Type: "click", Name: "box.view"}},
		{"finetuned", "I search\x00" + `{"type":"type_and_submit","name":"q","text":"shirt"}`, "I search",
			nextaction.Action{Type: "type_and_submit", Name: "q", Text: "shirt"}},
	} {
		pl, err := p.Plan(context.Background(), &nextaction.NextActionRequest{Page: page, Format: tt.format, MaxTokens: 300})
		if err != nil {
			t.Fatal(err)
		}
		if pl.MaxTokens != 300 || len(pl.Prompt) == 0 || string(pl.Format) != tt.format || pl.Temperature != 0 {
			t.Fatalf("%s plan: %+v", tt.format, pl)
		}
		feed(t, pl, tt.out, 256+3)
		resp, err := pl.Answer(nextaction.Usage{PromptTokens: 7, CompletionTokens: 5}, nextaction.Timing{TotalMs: 1})
		if err != nil {
			t.Fatalf("%s: %v", tt.format, err)
		}
		if resp.Action != tt.action || resp.Rationale != tt.rationale || resp.Usage.TotalTokens != 12 || resp.Timing.TotalMs != 1 {
			t.Errorf("%s answer %+v", tt.format, resp)
		}
	}
}

func TestPlannerRefuses(t *testing.T) {
	t.Parallel()
	p := testPlanner(t, 2000)
	page := `<a name="x">X</a>`
	five := 5
	big := math.MaxInt
	hist := make([]nextaction.Step, 3)
	for i := range hist {
		hist[i] = nextaction.Step{Action: nextaction.Action{Type: "terminate"}}
	}
	for _, tt := range []struct {
		name     string
		req      nextaction.NextActionRequest
		field    string
		code     string
		tooLarge bool
	}{
		{"no page", nextaction.NextActionRequest{}, "page", "", false},
		{"page over the limit", nextaction.NextActionRequest{Page: strings.Repeat("x", 301)}, "page", "page_too_large", true},
		{"unknown format", nextaction.NextActionRequest{Page: page, Format: "free"}, "format", "", false},
		{"negative max_tokens", nextaction.NextActionRequest{Page: page, MaxTokens: -1}, "max_tokens", "", false},
		{"temperature", nextaction.NextActionRequest{Page: page, Temperature: func() *float64 { v := 2.5; return &v }()}, "temperature", "", false},
		{"bad history", nextaction.NextActionRequest{Page: page, History: []nextaction.Step{{Action: nextaction.Action{Type: "jump"}}}}, "history[0].action.type", "", false},
		{"too many messages", nextaction.NextActionRequest{Page: page, History: hist}, "history", "too_many_messages", false},
		{"max_tokens too few", nextaction.NextActionRequest{Page: page, MaxTokens: five}, "max_tokens", "", false},
		{"max_tokens near the integer maximum", nextaction.NextActionRequest{Page: page, MaxTokens: big}, "max_tokens", "context_length_exceeded", false},
		{"prompt over the context", nextaction.NextActionRequest{Page: page + strings.Repeat(" ", 280), Persona: strings.Repeat("p", 600)}, "page", "context_length_exceeded", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := p.Plan(context.Background(), &tt.req)
			wantPlanErr(t, err, tt.field, tt.code, tt.tooLarge)
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Plan(ctx, &nextaction.NextActionRequest{Page: page}); !errors.Is(err, context.Canceled) {
		t.Errorf("plan under a cancelled context: %v", err)
	}
}

// wantPlanErr checks that err is a *FieldError naming field (code empty)
// or a *RequestError with field, code and tooLarge.
func wantPlanErr(t *testing.T, err error, field, code string, tooLarge bool) {
	t.Helper()
	var (
		fe *nextaction.FieldError
		re *nextaction.RequestError
	)
	switch {
	case errors.As(err, &fe):
		if fe.Field != field || code != "" {
			t.Errorf("field error %+v, want field %q code %q", fe, field, code)
		}
	case errors.As(err, &re):
		if re.Field != field || re.Code != code || re.TooLarge != tooLarge {
			t.Errorf("request error %+v, want field %q code %q too large %v", re, field, code, tooLarge)
		}
	default:
		t.Errorf("error %v, want field %q code %q", err, field, code)
	}
}

func TestNewPlannerValidates(t *testing.T) {
	t.Parallel()
	if _, err := nextaction.NewPlanner(nextaction.PlannerConfig{}); err == nil {
		t.Error("empty config accepted")
	}
}
