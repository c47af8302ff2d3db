package server

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// jsonFrame is one open object or array on the way to a value.
type jsonFrame struct {
	array bool
	index int    // the current element's index (arrays)
	key   string // the current member's key (objects)
	inKey bool   // the next token of an object is a key (or its end)
}

// jsonPathAt names the value of body at offset, with array indexes:
// history[0].action.name. encoding/json's type errors name struct fields
// only (history.action.name); their Offset locates the value, which ends at
// or contains offset. The path is that of the last value starting before
// offset. One pass over body up to offset; "" for a top-level value or a
// body malformed before offset.
func jsonPathAt(body []byte, offset int64) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var stack []jsonFrame
	best := ""
	for dec.InputOffset() < offset {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		n := len(stack)
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:n-1]
			nextMember(stack)
			continue
		}
		if n > 0 && !stack[n-1].array && stack[n-1].inKey {
			stack[n-1].key, _ = tok.(string)
			stack[n-1].inKey = false
			continue
		}
		if n > 0 {
			best = framePath(stack)
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, jsonFrame{inKey: true})
		case json.Delim('['):
			stack = append(stack, jsonFrame{array: true})
		default:
			nextMember(stack)
		}
	}
	return best
}

// nextMember moves the innermost open value past a finished member.
func nextMember(stack []jsonFrame) {
	if n := len(stack); n > 0 {
		if stack[n-1].array {
			stack[n-1].index++
		} else {
			stack[n-1].inKey = true
		}
	}
}

func framePath(stack []jsonFrame) string {
	var b strings.Builder
	for i, f := range stack {
		if f.array {
			b.WriteString("[" + strconv.Itoa(f.index) + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(f.key)
	}
	return b.String()
}
