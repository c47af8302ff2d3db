package nextaction_test

import (
	"strings"
	"testing"

	"github.com/nextact/nextact/nextaction"
)

func TestFindPromptedAnswer(t *testing.T) {
	t.Parallel()
	buy := nextaction.Action{Type: "click", Name: "cart.buy_now"}
	tests := []struct {
		name, text string
		rationale  string
		want       nextaction.Action
		ok         bool
	}{
		{"exact", `{"rationale":"I want it.","action":{"type":"click","name":"cart.buy_now"}}`, "I want it.", buy, true},
		{"keys reversed, spaces", "{ \"action\" : {\"name\": \"cart.buy_now\", \"type\": \"click\"},\n \"rationale\": \"ok\" }", "ok", buy, true},
		{"code fence and prose", "Sure! Here is the answer:\n```json\n{\"rationale\":\"r\",\"action\":{\"type\":\"terminate\"}}\n```\nLet me know.", "r", nextaction.Action{Type: "terminate"}, true},
		{"think block with a decoy", `<think>Maybe {"action":{"type":"terminate"}}? No, "quotes" and {braces.</think> {"rationale":"x","action":{"type":"type_and_submit","name":"search_input","text":"red shirt"}}`,
			"x", nextaction.Action{Type: "type_and_submit", Name: "search_input", Text: "red shirt"}, true},
		{"bare action", `I would click: {"type":"click","name":"cart.buy_now"}`, "", buy, true},
		{"type normalized", `{"action":{"type":" Click ","name":"cart.buy_now"}}`, "", buy, true},
		{"extra keys ignored", `{"thought":"...","action":{"type":"click","name":"cart.buy_now","confidence":0.9},"rationale":"r"}`, "r", buy, true},
		{"nested one level", `{"answer":{"rationale":"r","action":{"type":"terminate"}}}`, "r", nextaction.Action{Type: "terminate"}, true},
		{"last answer wins", `{"action":{"type":"terminate"}} then {"action":{"type":"click","name":"cart.buy_now"}}`, "", buy, true},
		{"braces inside strings", `{"rationale":"a } and { inside","action":{"type":"click","name":"cart.buy_now"}}`, "a } and { inside", buy, true},
		{"non-string rationale dropped", `{"rationale":5,"action":{"type":"terminate"}}`, "", nextaction.Action{Type: "terminate"}, true},
		{"no json", "I think the shopper buys the shirt.", "", nextaction.Action{}, false},
		{"truncated", `{"rationale":"I want","action":{"type":"cli`, "", nextaction.Action{}, false},
		{"object without action", `{"rationale":"only"}`, "", nextaction.Action{}, false},
		{"action not an object", `{"action":"click buy"}`, "", nextaction.Action{}, false},
		{"type not a string", `{"action":{"type":1}}`, "", nextaction.Action{}, false},
		{"empty", "", "", nextaction.Action{}, false},
		{"unbalanced closers", "}}}} {\"type\":\"terminate\"} }}", "", nextaction.Action{Type: "terminate"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, a, ok := nextaction.FindPromptedAnswer(tc.text)
			if ok != tc.ok || a != tc.want || r != tc.rationale {
				t.Fatalf("got (%q, %+v, %v), want (%q, %+v, %v)", r, a, ok, tc.rationale, tc.want, tc.ok)
			}
		})
	}
}

// A long hostile text (deep braces, many objects) is read in one pass.
func TestFindPromptedAnswerLarge(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("{", 200000) + strings.Repeat(`{"x":1} `, 50000) + `{"action":{"type":"terminate"}}`
	if _, a, ok := nextaction.FindPromptedAnswer(text); ok || a.Type != "" {
		// the opening braces never close, so every object is nested too deep
		t.Fatalf("got %+v %v", a, ok)
	}
	text = strings.Repeat(`{"x":1} `, 50000) + `{"action":{"type":"terminate"}}`
	if _, a, ok := nextaction.FindPromptedAnswer(text); !ok || a.Type != "terminate" {
		t.Fatalf("got %+v %v", a, ok)
	}
}
