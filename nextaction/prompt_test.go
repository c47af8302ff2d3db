package nextaction_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestParseFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want nextaction.Format
		ok   bool
	}{
		{"prompted", nextaction.FormatPrompted, true},
		{"finetuned", nextaction.FormatFinetuned, true},
		{" FineTuned ", nextaction.FormatFinetuned, true},
		{"", "", false},
		{"fine-tuned", "", false},
		{"chatml", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := nextaction.ParseFormat(tt.in)
			if got != tt.want || (err == nil) != tt.ok {
				t.Fatalf("ParseFormat(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "valid: prompted, finetuned") {
				t.Errorf("error %q does not list the valid formats", err)
			}
		})
	}
}

// session is two earlier steps with a persona; the second step has no page
// and a typed text that needs escaping.
var session = nextaction.PromptInput{
	Persona: "  A 34-year-old hiker on a budget who reads reviews before buying.\n",
	History: []nextaction.Step{
		{
			Page:      `<html><body><input name="search_input" placeholder="Search"><a name="deals.today">Today's deals</a></body></html>`,
			Action:    nextaction.Action{Type: "type_and_submit", Name: "search_input", Text: `hiking shirt "UPF 50"`},
			Rationale: "I want a light hiking shirt with sun protection, so I search for one.",
		},
		{
			Action:    nextaction.Action{Type: "click", Name: "refinements.customer_reviews.4_stars_up"},
			Rationale: "",
		},
	},
	Page: `<html><body><div name="columbia_shirt"><a name="columbia_shirt.view_product">Columbia Silver Ridge</a></div><button name="buy_now">Buy Now</button></body></html>`,
}

var firstStep = nextaction.PromptInput{
	Page: `<html><body><input name="search_input" placeholder="Search"></body></html>`,
}

// render writes messages as text for the golden files.
func render(msgs []models.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString("=== " + m.Role + " ===\n" + m.Content + "\n")
	}
	return b.String()
}

func TestBuildPromptGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file   string
		format nextaction.Format
		in     nextaction.PromptInput
	}{
		{"prompted_history.golden", nextaction.FormatPrompted, session},
		{"prompted_first_step.golden", nextaction.FormatPrompted, firstStep},
		{"finetuned_history.golden", nextaction.FormatFinetuned, session},
		{"finetuned_first_step.golden", nextaction.FormatFinetuned, firstStep},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			msgs, err := nextaction.BuildPrompt(tt.format, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got := render(msgs)
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs (run go test -update after checking):\n%s", path, got)
			}
		})
	}
}

// TestBuildPromptShape checks the turn structure of both formats and that
// every chat format of package models renders them.
func TestBuildPromptShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format nextaction.Format
		in     nextaction.PromptInput
		roles  string
	}{
		{nextaction.FormatPrompted, firstStep, "system user"},
		{nextaction.FormatPrompted, session, "system user assistant user assistant user"},
		{nextaction.FormatFinetuned, firstStep, "system user"},
		{nextaction.FormatFinetuned, session, "system user assistant user assistant user assistant user assistant user"},
	}
	for _, tt := range tests {
		t.Run(string(tt.format)+"/"+tt.roles, func(t *testing.T) {
			t.Parallel()
			msgs, err := nextaction.BuildPrompt(tt.format, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			roles := make([]string, len(msgs))
			for i, m := range msgs {
				roles[i] = m.Role
			}
			if got := strings.Join(roles, " "); got != tt.roles {
				t.Fatalf("roles = %s, want %s", got, tt.roles)
			}
			if last := msgs[len(msgs)-1]; last.Content != tt.in.Page {
				t.Errorf("last message = %q, want the current page", last.Content)
			}
			hasPersona := strings.Contains(msgs[0].Content, strings.TrimSpace(tt.in.Persona))
			if tt.in.Persona != "" && !hasPersona {
				t.Error("system message lacks the persona")
			}
			if tt.format == nextaction.FormatFinetuned {
				for i := 3; i < len(msgs)-1; i += 4 {
					if want := nextaction.FinetunedActionTurn(); msgs[i].Role != want.Role || msgs[i].Content != want.Content {
						t.Errorf("message %d = %+v, want the end-of-rationale turn", i, msgs[i])
					}
				}
			}
			for _, cf := range []models.ChatFormat{models.FormatLlama3, models.FormatChatML, models.FormatMistral} {
				if _, err := cf.Render(msgs); err != nil {
					t.Errorf("%s: %v", cf, err)
				}
			}
		})
	}
}

func TestBuildPromptErrors(t *testing.T) {
	t.Parallel()
	step := func(a nextaction.Action) nextaction.Step { return nextaction.Step{Page: "<p>x</p>", Action: a} }
	ok := step(nextaction.Action{Type: "terminate"})
	tests := []struct {
		name   string
		format nextaction.Format
		in     nextaction.PromptInput
		field  string
		msg    string
	}{
		{"unknown format", "chatml", firstStep, "format", `unknown format "chatml" (valid: prompted, finetuned, tools)`},
		{"empty format", "", firstStep, "format", "unknown format"},
		{"no page", nextaction.FormatPrompted, nextaction.PromptInput{}, "page", "required"},
		{"bad type", nextaction.FormatPrompted, nextaction.PromptInput{Page: "p", History: []nextaction.Step{ok, ok, ok, step(nextaction.Action{Type: "jump"})}},
			"history[3].action.type", `unknown action type "jump"`},
		{"missing type", nextaction.FormatFinetuned, nextaction.PromptInput{Page: "p", History: []nextaction.Step{step(nextaction.Action{})}},
			"history[0].action.type", "required"},
		{"click without name", nextaction.FormatFinetuned, nextaction.PromptInput{Page: "p", History: []nextaction.Step{ok, step(nextaction.Action{Type: "click"})}},
			"history[1].action.name", "required"},
		{"typing without text", nextaction.FormatPrompted, nextaction.PromptInput{Page: "p", History: []nextaction.Step{step(nextaction.Action{Type: "type_and_submit", Name: "q"})}},
			"history[0].action.text", "required"},
		{"terminate with name", nextaction.FormatPrompted, nextaction.PromptInput{Page: "p", History: []nextaction.Step{step(nextaction.Action{Type: "terminate", Name: "x"})}},
			"history[0].action.name", "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msgs, err := nextaction.BuildPrompt(tt.format, tt.in)
			var fe *nextaction.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("BuildPrompt = %v, %v; want a *FieldError", msgs, err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Msg, tt.msg) {
				t.Errorf("error = %q, want field %q and message containing %q", err, tt.field, tt.msg)
			}
			if want := tt.field + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Error() = %q, want prefix %q", err, want)
			}
		})
	}
}

func TestPromptedOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rationale string
		action    nextaction.Action
		want      string
	}{
		{"I like it.", nextaction.Action{Type: "click", Name: "buy_now"}, `{"rationale":"I like it.","action":{"type":"click","name":"buy_now"}}`},
		{"", nextaction.Action{Type: "terminate"}, `{"rationale":"","action":{"type":"terminate"}}`},
		{"a \"b\"\n", nextaction.Action{Type: "type_and_submit", Name: "q", Text: "x"}, `{"rationale":"a \"b\"\n","action":{"type":"type_and_submit","name":"q","text":"x"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			got := nextaction.PromptedOutput(tt.rationale, tt.action)
			if got != tt.want {
				t.Fatalf("PromptedOutput = %s, want %s", got, tt.want)
			}
			r, a, err := nextaction.ParsePromptedOutput([]byte(got))
			if err != nil || r != tt.rationale || a != tt.action {
				t.Fatalf("ParsePromptedOutput = %q, %+v, %v; want %q, %+v", r, a, err, tt.rationale, tt.action)
			}
		})
	}
}

func TestParsePromptedOutputErrors(t *testing.T) {
	t.Parallel()
	tests := []string{
		``,
		`null`,
		`{"rationale":"x"}`,
		`{"action":{"type":"terminate"}}`,
		`{"rationale":"x","action":null}`,
		`{"rationale":"x","action":{"type":"terminate"},"extra":1}`,
		`{"rationale":"x","action":{"type":"terminate","why":1}}`,
		`{"rationale":"x","action":{"type":"terminate"}} trailing`,
		`{"rationale":"x","action":{"type":"terminate"}`,
	}
	for _, in := range tests {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			if r, a, err := nextaction.ParsePromptedOutput([]byte(in)); err == nil {
				t.Fatalf("ParsePromptedOutput = %q, %+v, nil; want an error", r, a)
			}
		})
	}
}
