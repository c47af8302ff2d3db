package nextaction

import (
	"encoding/json"
	"strings"
)

// FindPromptedAnswer reads the answer of a model that was asked for the
// prompted format but not constrained to it: it finds the JSON object in
// free text (a preamble, a code fence, a <think> block, an explanation
// after it). Candidates are the balanced {...} objects of the text (at the
// top level, and the objects directly inside those), tried from the last
// one back: the first that is {"rationale":..., "action":{...}} (keys in
// any order, other keys ignored) or a bare action {"type":...} wins. Text
// after the last </think> is searched first, then the whole text. The
// action's type is lower-cased and trimmed; names and text are kept as
// written. The action is not validated (see Action.Validate). ok is false
// when no candidate reads as an answer.
//
// The work is linear in len(text).
func FindPromptedAnswer(text string) (rationale string, a Action, ok bool) {
	if i := strings.LastIndex(text, "</think>"); i >= 0 {
		if rationale, a, ok = findAnswer(text[i+len("</think>"):]); ok {
			return rationale, a, ok
		}
	}
	return findAnswer(text)
}

func findAnswer(text string) (string, Action, bool) {
	spans := objectSpans(text)
	for i := len(spans) - 1; i >= 0; i-- {
		if r, a, ok := readAnswer(text[spans[i][0]:spans[i][1]]); ok {
			return r, a, true
		}
	}
	return "", Action{}, false
}

// objectSpans returns the [start, end) of every balanced JSON-looking
// object of text at depth 1 or 2, ordered by end. Quotes count only inside
// an object, so prose around it cannot unbalance the scan.
func objectSpans(text string) [][2]int {
	var spans [][2]int
	var starts []int // open braces, innermost last
	inString, escaped := false, false
	for i := 0; i < len(text); i++ {
		c := text[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			if len(starts) > 0 {
				inString = true
			}
		case '{':
			starts = append(starts, i)
		case '}':
			if len(starts) == 0 {
				continue
			}
			if len(starts) <= 2 {
				spans = append(spans, [2]int{starts[len(starts)-1], i + 1})
			}
			starts = starts[:len(starts)-1]
		}
	}
	return spans
}

// readAnswer decodes one candidate object.
func readAnswer(obj string) (string, Action, bool) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(obj), &fields); err != nil {
		return "", Action{}, false
	}
	if raw, ok := fields["action"]; ok {
		a, ok := readAction(raw)
		if !ok {
			return "", Action{}, false
		}
		var rationale string
		if r, ok := fields["rationale"]; ok {
			_ = json.Unmarshal(r, &rationale) // a rationale that is not a string is left out
		}
		return rationale, a, true
	}
	if _, ok := fields["type"]; ok {
		a, ok := readAction([]byte(obj))
		return "", a, ok
	}
	return "", Action{}, false
}

func readAction(raw []byte) (Action, bool) {
	var a struct {
		Type *string `json:"type"`
		Name string  `json:"name"`
		Text string  `json:"text"`
	}
	if err := json.Unmarshal(raw, &a); err != nil || a.Type == nil {
		return Action{}, false
	}
	return Action{Type: strings.ToLower(strings.TrimSpace(*a.Type)), Name: a.Name, Text: a.Text}, true
}
