package server

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
)

// toolFrames stream a chat answer that may be tool calls, as the OpenAI
// SDKs read them: content deltas for text that is surely content; each
// call as one delta carrying index, id, type, function.name and arguments
// "", then deltas carrying its arguments, and finish_reason "tool_calls".
//
// A forced call streams as it is written (callScan): the first delta once
// the name is known, then the arguments in fragments. A free answer (auto) holds
// back only text that may still open a call in the format's convention
// (models.ChatFormat.CallStart): leading whitespace, a prefix of the
// marker, and everything from the marker on; once the answer can no
// longer be a call its text streams as it comes.
type toolFrames struct {
	*sseFrames
	format models.ChatFormat
	plan   *toolPlan
	answer strings.Builder
	sent   int  // bytes of text sent as content
	lead   int  // leading whitespace skipped (Llama 3, Mistral)
	at     int  // where calls begin in text; -1 while none
	final  bool // text can no longer become a call
	// forced streams a forced answer's calls as they are written.
	forced *callScan
	out    []byte
}

var _ frames = (*toolFrames)(nil)

func newToolFrames(sse *sseFrames, f models.ChatFormat, plan *toolPlan) *toolFrames {
	tf := &toolFrames{sseFrames: sse, format: f, plan: plan, at: -1, final: plan.mode == toolsOff}
	if plan.mode == toolsForced {
		tf.forced = newCallScan(f)
	}
	return tf
}

// text: a tool stream carries no logprobs (refused with tools when
// streaming).
func (f *toolFrames) text(s string, _ []batching.TokenLogprob) []byte {
	f.answer.WriteString(s)
	if f.forced != nil {
		f.out = f.forced.scan(f, f.answer.String(), f.out[:0])
		return f.out
	}
	if f.at >= 0 {
		return nil
	}
	all := f.answer.String()
	safe := len(all)
	if !f.final {
		safe = f.scan(all)
	}
	if safe <= f.sent {
		return nil
	}
	ev := f.events.content(all[f.sent:safe], nil)
	f.sent = safe
	return ev
}

// scan finds how much of all is surely content, looking only at what
// earlier calls have not settled, so a long answer costs linear time.
func (f *toolFrames) scan(all string) int {
	from := f.sent // ChatML: a marker starts at or after the held text
	if f.format != models.FormatChatML {
		for f.lead < len(all) {
			r, size := utf8.DecodeRuneInString(all[f.lead:])
			if !unicode.IsSpace(r) {
				break
			}
			f.lead += size
		}
		from = f.lead
	}
	safe, at, final := f.format.CallStart(all[from:])
	if at >= 0 {
		f.at = from + at
	}
	f.final = final
	if final {
		return len(all)
	}
	if f.format != models.FormatChatML {
		return f.sent // nothing before the marker is content yet
	}
	return from + safe
}

// end sends what is left: the calls, or the held text as content; then
// the finish event, usage and [DONE].
func (f *toolFrames) end(c batching.Chunk) []byte {
	all := f.answer.String()
	content, calls := answerCalls(f.format, f.plan, all)
	f.out = f.out[:0]
	reason := c.Finish.String()
	switch {
	case f.forced != nil && f.forced.calls > 0:
		// The calls went out as they were written; the grammar closed
		// them (a call cut short has arguments that do not parse).
		reason = "tool_calls"
	case len(calls) > 0:
		// Content before the calls (ChatML) was sent as it came.
		if f.sent < len(content) {
			f.out = append(f.out, f.events.content(content[f.sent:], nil)...)
		}
		for i, call := range calls {
			f.out = f.callDelta(f.out, toolCallDelta{Index: i, ID: newCallID(), Type: "function", Function: &toolFunctionDelta{Name: call.Name}})
			f.out = f.callDelta(f.out, toolCallDelta{Index: i, Function: &toolFunctionDelta{Arguments: call.Arguments}})
		}
		reason = "tool_calls"
	case f.sent < len(all):
		f.out = append(f.out, f.events.content(all[f.sent:], nil)...)
	}
	f.out = append(f.out, f.events.finish(reason)...)
	if f.includeUsage {
		f.out = append(f.out, f.events.usage(c.Usage)...)
	}
	return append(f.out, doneEvent...)
}

// toolCallDelta is one element of a delta's tool_calls; the first of a
// call sets ID, Type and Function.Name (with arguments ""), later ones
// only Function.Arguments.
type toolCallDelta struct {
	Index    int                `json:"index"`
	ID       string             `json:"id,omitempty"`
	Type     string             `json:"type,omitempty"`
	Function *toolFunctionDelta `json:"function,omitempty"`
}

type toolFunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type toolDeltaChoice struct {
	Index int `json:"index"`
	Delta struct {
		ToolCalls []toolCallDelta `json:"tool_calls"`
	} `json:"delta"`
	Logprobs     any `json:"logprobs"`
	FinishReason any `json:"finish_reason"`
}

// callDelta appends one chunk event carrying d.
func (f *toolFrames) callDelta(out []byte, d toolCallDelta) []byte {
	var ch toolDeltaChoice
	ch.Delta.ToolCalls = []toolCallDelta{d}
	b, _ := json.Marshal(ch) // plain structs of strings and ints: cannot fail
	out = append(out, f.events.head...)
	out = append(out, `,"choices":[`...)
	out = append(out, b...)
	out = append(out, ']')
	return append(out, f.events.tail...)
}

// callScan follows a forced answer (CallSchema's JSON: a call object, or
// Mistral's array of them) byte by byte as it streams, so that each
// call's first delta goes out as soon as its name is known and its
// arguments as they are written, compacted as ParseForced compacts them.
type callScan struct {
	pos       int // bytes of the answer scanned
	depth     int // nesting outside strings
	inStr     bool
	esc       bool
	strAt     int    // where the current string's text starts
	callDepth int    // depth inside a call object
	argsKey   string // the call object's arguments member
	key       string // the last member name at callDepth
	colon     bool   // a value at callDepth follows
	name      string // the current call's name
	inArgs    bool   // the scan is inside the current call's arguments
	calls     int    // calls opened
}

func newCallScan(f models.ChatFormat) *callScan {
	s := &callScan{callDepth: 1, argsKey: "arguments"}
	if f.ParallelCalls() {
		s.callDepth = 2
	}
	if f == models.FormatLlama3 {
		s.argsKey = "parameters"
	}
	return s
}

// scan reads answer[s.pos:], appending the deltas it completes to out.
func (s *callScan) scan(f *toolFrames, answer string, out []byte) []byte {
	var args []byte
	flush := func() {
		if len(args) > 0 {
			out = f.callDelta(out, toolCallDelta{Index: s.calls - 1, Function: &toolFunctionDelta{Arguments: string(args)}})
			args = args[:0]
		}
	}
	for ; s.pos < len(answer); s.pos++ {
		c := answer[s.pos]
		if s.inArgs && (s.inStr || !isJSONSpace(c)) && !(c == '}' && s.depth == s.callDepth) {
			args = append(args, c)
		}
		switch {
		case s.inStr:
			switch {
			case s.esc:
				s.esc = false
			case c == '\\':
				s.esc = true
			case c == '"':
				s.inStr = false
				if s.depth == s.callDepth && !s.inArgs {
					if text := answer[s.strAt:s.pos]; s.colon && s.key == "name" {
						s.name = text
					} else if !s.colon {
						s.key = text
					}
				}
			}
		case c == '"':
			s.inStr, s.strAt = true, s.pos+1
		case c == '{' || c == '[':
			s.depth++
			if s.depth == s.callDepth && c == '{' {
				s.key, s.colon, s.name = "", false, ""
			}
		case c == '}' || c == ']':
			if s.depth == s.callDepth && s.inArgs {
				s.inArgs = false
				flush()
			}
			s.depth--
		case c == ':' && s.depth == s.callDepth && !s.inArgs:
			s.colon = true
			if s.key == s.argsKey && s.name != "" {
				s.inArgs = true
				s.calls++
				out = f.callDelta(out, toolCallDelta{Index: s.calls - 1, ID: newCallID(), Type: "function", Function: &toolFunctionDelta{Name: s.name}})
			}
		case c == ',' && s.depth == s.callDepth:
			if s.inArgs {
				s.inArgs = false
				args = args[:len(args)-1] // the comma after the arguments
				flush()
			}
			s.colon = false
		}
	}
	flush()
	return out
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
