package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode"
)

// The markers that open a format's tool calls in the model's output.
const (
	qwenCallOpen     = "<tool_call>"
	qwenCallClose    = "</tool_call>"
	mistralCalls     = "[TOOL_CALLS]"
	llama3PythonTag  = "<|python_tag|>"
	maxCallsPerReply = 16
)

// argsKey is the member of a call object that holds the arguments.
func (f ChatFormat) argsKey() string {
	if f == FormatLlama3 {
		return "parameters"
	}
	return "arguments"
}

// ParallelCalls reports whether the format's calls are one JSON array
// (Mistral's [TOOL_CALLS]), so that CallSchema holds several calls.
// ChatML writes several calls as blocks (CallBlocks); Llama 3.1's
// template allows one call per turn.
func (f ChatFormat) ParallelCalls() bool { return f == FormatMistral }

// CallBlocks is how the format writes several calls as blocks, each call
// object between open and close (the first open is CallPrefix): ChatML's
// <tool_call> blocks. ok is false for the other formats.
func (f ChatFormat) CallBlocks() (close, open string, ok bool) {
	if f == FormatChatML {
		return "\n" + qwenCallClose, "\n" + qwenCallOpen + "\n", true
	}
	return "", "", false
}

// CallPrefix is what follows the generation prompt when the model must
// call a tool: the format's opening marker, after which the model writes
// only the call's JSON (CallSchema).
func (f ChatFormat) CallPrefix() string {
	switch f {
	case FormatChatML:
		return qwenCallOpen + "\n"
	case FormatMistral:
		return mistralCalls
	}
	return ""
}

// CallSchema is the JSON schema of a forced answer after CallPrefix: a
// call object {"name": const, "<arguments>": the tool's parameters}, any
// of tools; for Mistral an array of 1 to maxCalls of them. Each tool's
// $refs are rebased to where its schema sits. A tool without parameters
// takes an empty object; a schema that leaves the type open gets type
// object (ToolParametersError refuses one of another type).
func (f ChatFormat) CallSchema(tools []Tool, maxCalls int) ([]byte, error) {
	if len(tools) == 0 {
		return nil, errors.New("no tools")
	}
	prefix := ""
	var b []byte
	if f.ParallelCalls() {
		maxCalls = min(max(maxCalls, 1), maxCallsPerReply)
		b = append(b, `{"type":"array","minItems":1,"maxItems":`...)
		b = strconv.AppendInt(b, int64(maxCalls), 10)
		b = append(b, `,"items":`...)
		prefix = "/items"
	}
	b = append(b, `{"anyOf":[`...)
	for i, t := range tools {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":"object","properties":{"name":{"const":`...)
		b = appendPyString(b, t.Name)
		b = append(b, `},"`+f.argsKey()+`":`...)
		params := t.Parameters
		if len(bytes.TrimSpace(params)) == 0 {
			params = []byte(`{"type":"object","properties":{},"additionalProperties":false}`)
		}
		ptr := prefix + "/anyOf/" + strconv.Itoa(i) + "/properties/" + f.argsKey()
		rebased, err := pyJSON(params, pyJSONOptions{refPrefix: ptr})
		if err != nil {
			return nil, err
		}
		if untypedObject(rebased) {
			// Arguments are an object: a schema that leaves the type
			// open ({} included) gets it.
			rebased = append([]byte(`{"type": "object", `), bytes.TrimPrefix(rebased, []byte("{"))...)
			rebased = bytes.Replace(rebased, []byte(`"object", }`), []byte(`"object"}`), 1)
		}
		b = append(b, rebased...)
		b = append(b, `},"required":["name","`+f.argsKey()+`"]}`...)
	}
	b = append(b, "]}"...)
	if f.ParallelCalls() {
		b = append(b, '}')
	}
	return b, nil
}

// untypedObject reports whether schema is an object without "type" or
// anything that decides the type instead ($ref, anyOf, oneOf, allOf,
// enum, const).
func untypedObject(schema []byte) bool {
	var root map[string]json.RawMessage
	if json.Unmarshal(schema, &root) != nil {
		return false
	}
	for _, k := range []string{"type", "$ref", "anyOf", "oneOf", "allOf", "enum", "const"} {
		if _, ok := root[k]; ok {
			return false
		}
	}
	return true
}

// ToolParametersError explains why parameters cannot describe a call's
// arguments, which are a JSON object: a "type" other than "object". ""
// when they can.
func ToolParametersError(schema []byte) string {
	var root struct {
		Type json.RawMessage `json:"type"`
	}
	if json.Unmarshal(schema, &root) != nil || root.Type == nil || string(bytes.TrimSpace(root.Type)) == `"object"` {
		return ""
	}
	return `the arguments of a call are a JSON object: the schema's "type" must be "object"`
}

// ParseForced reads the calls of a forced answer: out is what the model
// wrote after CallPrefix.
func (f ChatFormat) ParseForced(out string, known func(string) bool) ([]ToolCall, bool) {
	_, calls, ok := f.ParseToolCalls(f.CallPrefix()+out, known)
	return calls, ok
}

// ParseToolCalls reads a free answer (tool_choice auto): when it is a
// call in the format's convention, of tools that known accepts, it
// returns the calls and the text before them (ChatML allows text before
// its <tool_call> blocks; Llama 3 and Mistral calls are the whole
// answer). Otherwise ok is false and the answer is plain content. Call
// ids are left empty.
func (f ChatFormat) ParseToolCalls(text string, known func(string) bool) (content string, calls []ToolCall, ok bool) {
	switch f {
	case FormatLlama3:
		body := strings.TrimPrefix(strings.TrimSpace(text), llama3PythonTag)
		c, ok := parseCallObject(body, known, "parameters", "arguments")
		if !ok {
			return "", nil, false
		}
		return "", []ToolCall{c}, true
	case FormatChatML:
		at := strings.Index(text, qwenCallOpen)
		if at < 0 {
			return "", nil, false
		}
		calls, ok := parseQwenBlocks(text[at:], known)
		return strings.TrimRightFunc(text[:at], unicode.IsSpace), calls, ok
	case FormatMistral:
		body, found := strings.CutPrefix(strings.TrimSpace(text), mistralCalls)
		if !found {
			return "", nil, false
		}
		calls, ok := parseCallArray(strings.TrimSpace(body), known)
		return "", calls, ok
	}
	return "", nil, false
}

// CallStart tells a stream of a free answer how much of text (the answer
// so far) is surely content: safe bytes may be sent; at >= 0 is where
// tool calls begin (then nothing after it is content until the answer is
// parsed at its end). final reports that text can no longer become a call
// (Llama 3 and Mistral calls open the answer), so later text is content
// without asking again.
func (f ChatFormat) CallStart(text string) (safe, at int, final bool) {
	switch f {
	case FormatChatML:
		if i := strings.Index(text, qwenCallOpen); i >= 0 {
			return len(strings.TrimRightFunc(text[:i], unicode.IsSpace)), i, false
		}
		// Whitespace before a call is not content (ParseToolCalls trims
		// it): it is held until text follows.
		return len(strings.TrimRightFunc(text[:len(text)-partialSuffix(text, qwenCallOpen)], unicode.IsSpace)), -1, false
	case FormatLlama3, FormatMistral:
		lead := len(text) - len(strings.TrimLeftFunc(text, unicode.IsSpace))
		rest := text[lead:]
		if rest == "" {
			return 0, -1, false
		}
		markers := []string{mistralCalls}
		if f == FormatLlama3 {
			markers = []string{"{", llama3PythonTag}
		}
		for _, m := range markers {
			if strings.HasPrefix(rest, m) {
				return lead, lead, false
			}
			if strings.HasPrefix(m, rest) {
				return 0, -1, false // may still become the marker
			}
		}
		return len(text), -1, true
	}
	return len(text), -1, true
}

// partialSuffix is the length of the longest suffix of s that is a proper
// prefix of marker.
func partialSuffix(s, marker string) int {
	for n := min(len(marker)-1, len(s)); n > 0; n-- {
		if strings.HasSuffix(s, marker[:n]) {
			return n
		}
	}
	return 0
}

// parseQwenBlocks reads <tool_call>{…}</tool_call> blocks separated by
// whitespace; the last one's closing tag may be missing (the answer ended
// there).
func parseQwenBlocks(s string, known func(string) bool) ([]ToolCall, bool) {
	var calls []ToolCall
	for {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		if s == "" && len(calls) > 0 {
			return calls, true
		}
		body, found := strings.CutPrefix(s, qwenCallOpen)
		if !found || len(calls) == maxCallsPerReply {
			return nil, false
		}
		end := strings.Index(body, qwenCallClose)
		rest := ""
		if end >= 0 {
			body, rest = body[:end], body[end+len(qwenCallClose):]
		}
		c, ok := parseCallObject(strings.TrimSpace(body), known, "arguments", "parameters")
		if !ok {
			return nil, false
		}
		calls = append(calls, c)
		if end < 0 {
			return calls, true
		}
		s = rest
	}
}

// parseCallArray reads [{"name": …, "arguments": …}, …] (or one object).
func parseCallArray(s string, known func(string) bool) ([]ToolCall, bool) {
	if strings.HasPrefix(s, "{") {
		c, ok := parseCallObject(s, known, "arguments", "parameters")
		return []ToolCall{c}, ok
	}
	var items []json.RawMessage
	if !decodeOne(s, &items) || len(items) == 0 || len(items) > maxCallsPerReply {
		return nil, false
	}
	calls := make([]ToolCall, len(items))
	for i, it := range items {
		c, ok := parseCallObject(string(it), known, "arguments", "parameters")
		if !ok {
			return nil, false
		}
		calls[i] = c
	}
	return calls, true
}

// parseCallObject reads {"name": known tool, key or alt: object}, the
// arguments also as a string holding an object.
func parseCallObject(s string, known func(string) bool, key, alt string) (ToolCall, bool) {
	var obj map[string]json.RawMessage
	if !decodeOne(s, &obj) {
		return ToolCall{}, false
	}
	var name string
	if json.Unmarshal(obj["name"], &name) != nil || !known(name) {
		return ToolCall{}, false
	}
	args, found := obj[key]
	if !found {
		args = obj[alt]
	}
	var text string
	if json.Unmarshal(args, &text) == nil {
		args = json.RawMessage(text)
	}
	var buf bytes.Buffer
	if t := bytes.TrimSpace(args); len(t) == 0 || t[0] != '{' || json.Compact(&buf, t) != nil {
		return ToolCall{}, false
	}
	return ToolCall{Name: name, Arguments: buf.String()}, true
}

// decodeOne decodes s as exactly one JSON value.
func decodeOne(s string, v any) bool {
	dec := json.NewDecoder(strings.NewReader(s))
	if dec.Decode(v) != nil {
		return false
	}
	_, err := dec.Token()
	return errors.Is(err, io.EOF)
}
