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
// SDKs read them: content deltas for text that is surely content; the
// calls, once the answer has ended and parsed as calls, as one delta per
// call carrying index, id, type, function.name and arguments "", then one
// carrying its arguments, and finish_reason "tool_calls".
//
// A forced call streams nothing until the end. A free answer (auto) holds
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
	out    []byte
}

var _ frames = (*toolFrames)(nil)

func newToolFrames(sse *sseFrames, f models.ChatFormat, plan *toolPlan) *toolFrames {
	return &toolFrames{sseFrames: sse, format: f, plan: plan, at: -1, final: plan.mode == toolsOff}
}

func (f *toolFrames) text(s string) []byte {
	f.answer.WriteString(s)
	if f.plan.mode == toolsForced || f.at >= 0 {
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
	ev := f.events.content(all[f.sent:safe])
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
	if len(calls) > 0 {
		// Content before the calls (ChatML) was sent as it came.
		if f.sent < len(content) {
			f.out = append(f.out, f.events.content(content[f.sent:])...)
		}
		for i, call := range calls {
			f.out = f.callDelta(f.out, toolCallDelta{Index: i, ID: newCallID(), Type: "function", Function: &toolFunctionDelta{Name: call.Name}})
			f.out = f.callDelta(f.out, toolCallDelta{Index: i, Function: &toolFunctionDelta{Arguments: call.Arguments}})
		}
		reason = "tool_calls"
	} else if f.sent < len(all) {
		f.out = append(f.out, f.events.content(all[f.sent:])...)
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
