package server

import (
	"encoding/json"
	"strings"
)

// unhonouredParams are OpenAI (and vLLM) request fields that nextact
// parses but does not honour yet. Each is accepted only at its neutral
// value, which changes nothing (a client library that always sends
// presence_penalty 0 keeps working); any other value is a 400 naming the
// field, never silently ignored.
type unhonouredParams struct {
	ToolChoice   json.RawMessage `json:"tool_choice"`
	Functions    json.RawMessage `json:"functions"`
	FunctionCall json.RawMessage `json:"function_call"`
}

// neutralField is one field and its neutral values.
type neutralField struct {
	param   string
	raw     json.RawMessage
	neutral []string // JSON texts that change nothing, compared as values
}

// check refuses the first field set to anything but a neutral value.
func (u *unhonouredParams) check() error {
	return checkNeutral(
		// /v1/completions has no tools, so "none" and "auto" choose no
		// tool call: neutral (chat reads its own tool_choice, tools.go).
		neutralField{"tool_choice", u.ToolChoice, []string{`"none"`, `"auto"`}},
		neutralField{"functions", u.Functions, []string{"[]"}},
		neutralField{"function_call", u.FunctionCall, []string{`"none"`, `"auto"`}},
	)
}

// checkNeutral returns a 400 naming the first field that is set (not
// absent, not null) to a value other than its neutral ones.
func checkNeutral(fields ...neutralField) error {
	for _, f := range fields {
		if isNull(f.raw) || isNeutral(f.raw, f.neutral) {
			continue
		}
		return invalid(f.param, "'%s' is not supported yet: nextact accepts it only at its neutral value (%s), which changes nothing.",
			f.param, strings.Join(f.neutral, " or "))
	}
	return nil
}

// isNeutral reports whether raw equals one of the neutral JSON values
// (numbers by value: 0, 0.0 and -0 are all 0).
func isNeutral(raw json.RawMessage, neutral []string) bool {
	var got any
	if json.Unmarshal(raw, &got) != nil {
		return false
	}
	for _, n := range neutral {
		var want any
		_ = json.Unmarshal([]byte(n), &want)
		switch w := want.(type) {
		case float64:
			if g, ok := got.(float64); ok && g == w {
				return true
			}
		case string:
			if g, ok := got.(string); ok && g == w {
				return true
			}
		case map[string]any:
			if g, ok := got.(map[string]any); ok && len(g) == 0 && len(w) == 0 {
				return true
			}
		case []any:
			if g, ok := got.([]any); ok && len(g) == 0 && len(w) == 0 {
				return true
			}
		}
	}
	return false
}
