package server

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
)

// streamed feeds text to toolFrames in random pieces and reads the
// events back as an SDK does: the content, the calls, the finish reason;
// early is the content sent before the answer ended.
func streamed(t *testing.T, rng *rand.Rand, f models.ChatFormat, plan *toolPlan, text string) (content, early string, calls []models.ToolCall, finish string) {
	t.Helper()
	frames := newToolFrames(&sseFrames{events: newEventFormat(responseMeta{id: "x", model: "m", kind: chatEndpoint}, false)}, f, plan)
	var out strings.Builder
	for rest := text; rest != ""; {
		n := min(len(rest), 1+rng.IntN(4))
		out.Write(frames.text(rest[:n], nil))
		rest = rest[n:]
	}
	before := out.String()
	early, _, _ = readEvents(t, before)
	if plan.mode != toolsForced && strings.Contains(before, "tool_calls") {
		t.Fatalf("calls of a free answer sent before it ended: %s", before)
	}
	// A forced answer's calls stream as they are written: the name, then
	// the arguments in fragments.
	if plan.mode == toolsForced && strings.Count(before, `"arguments":`) < 3 {
		t.Fatalf("a forced answer streamed in fewer than 3 deltas: %s", before)
	}
	out.Write(frames.end(batching.Chunk{Done: true, Finish: batching.FinishStop}))
	content, calls, finish = readEvents(t, out.String())
	return content, early, calls, finish
}

// readEvents reads SSE chunk events: their content, calls and finish
// reason.
func readEvents(t *testing.T, sse string) (content string, calls []models.ToolCall, finish string) {
	t.Helper()
	for _, line := range strings.Split(sse, "\n") {
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok || payload == "[DONE]" {
			continue
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content   *string         `json:"content"`
					ToolCalls []toolCallDelta `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(payload), &ev); err != nil {
			t.Fatalf("event %q: %v", payload, err)
		}
		for _, ch := range ev.Choices {
			if ch.Delta.Content != nil {
				content += *ch.Delta.Content
			}
			for _, d := range ch.Delta.ToolCalls {
				switch {
				case d.ID != "" && d.Index == len(calls) && d.Function != nil && d.Function.Arguments == "":
					calls = append(calls, models.ToolCall{Name: d.Function.Name})
				case d.ID == "" && d.Index < len(calls) && d.Function != nil:
					calls[d.Index].Arguments += d.Function.Arguments
				default:
					t.Fatalf("unexpected tool call delta %s", payload)
				}
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	return content, calls, finish
}

// A streamed answer reads as the same message as the answer not
// streamed (toolAnswer), however the text is cut into pieces; content
// streams as it comes unless it may still open a call, and no text of a
// call is ever sent as content.
func TestToolFramesMatchTheAnswer(t *testing.T) {
	t.Parallel()
	auto := &toolPlan{mode: toolsAuto, known: map[string]bool{"get_weather": true}}
	forced := &toolPlan{mode: toolsForced, known: map[string]bool{"get_weather": true}}
	cases := []struct {
		f     models.ChatFormat
		plan  *toolPlan
		text  string
		calls int
		early string // content sent before the end
	}{
		{models.FormatLlama3, auto, ` {"name": "get_weather", "parameters": {"city": "Oslo"}}`, 1, ""},
		{models.FormatLlama3, auto, `<|python_tag|>{"name": "get_weather", "parameters": {}}`, 1, ""},
		{models.FormatLlama3, auto, `  Hello {world}`, 0, `  Hello {world}`},
		{models.FormatLlama3, auto, `{not a call}`, 0, ""},
		{models.FormatChatML, auto, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>", 1, "Let me check."},
		{models.FormatChatML, auto, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>", 2, ""},
		{models.FormatChatML, auto, "Hi <b>bold</b> <tool_call> broken", 0, "Hi <b>bold</b>"},
		{models.FormatChatML, auto, "Plain text.", 0, "Plain text."},
		{models.FormatMistral, auto, `[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}]`, 1, ""},
		{models.FormatMistral, auto, `[TOOLS are fun]`, 0, `[TOOLS are fun]`},
		{models.FormatChatML, forced, `{"name":"get_weather","arguments":{"city":"x"}}`, 1, ""},
		{models.FormatChatML, forced, "{\"name\":\"get_weather\",\"arguments\":{\"city\":\"x\"}}\n</tool_call>\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{}}\n</tool_call>", 2, ""},
		{models.FormatMistral, forced, `[{"name":"get_weather","arguments":{}},{"name":"get_weather","arguments":{"city":"y, \\\"}{:z","n":[1, 2]}}]`, 2, ""},
		{models.FormatLlama3, forced, `{"name":"get_weather","parameters":{"a":{"b":"}"}}}`, 1, ""},
		{models.FormatLlama3, &toolPlan{mode: toolsOff}, `{"name": "get_weather", "parameters": {}}`, 0, `{"name": "get_weather", "parameters": {}}`},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		msg, wantFinish := toolAnswer(c.f, c.plan, batching.Chunk{Text: c.text, Finish: batching.FinishStop})
		if len(msg.ToolCalls) != c.calls {
			t.Errorf("%s %q: %d calls, want %d", c.f, c.text, len(msg.ToolCalls), c.calls)
			continue
		}
		wantContent := ""
		if msg.Content != nil {
			wantContent = *msg.Content
		}
		for range 20 {
			content, early, calls, finish := streamed(t, rng, c.f, c.plan, c.text)
			if content != wantContent || finish != wantFinish || len(calls) != len(msg.ToolCalls) {
				t.Fatalf("%s %q: streamed content %q finish %s calls %v; answer content %q finish %s calls %v",
					c.f, c.text, content, finish, calls, wantContent, wantFinish, msg.ToolCalls)
			}
			for i, call := range calls {
				if want := msg.ToolCalls[i].Function; call.Name != want.Name || call.Arguments != want.Arguments {
					t.Fatalf("%s %q: call %d streamed %+v, want %+v", c.f, c.text, i, call, want)
				}
			}
			if early != c.early {
				t.Fatalf("%s %q: sent %q before the end, want %q", c.f, c.text, early, c.early)
			}
		}
	}
}

// FuzzToolFrames: any answer, cut into pieces of any size, streams
// without panicking and, unless forced (where the grammar writes the
// answer), reads as the same message as the answer not streamed.
func FuzzToolFrames(f *testing.F) {
	f.Add(uint8(0), uint8(1), uint8(2), ` {"name": "get_weather", "parameters": {"city": "Oslo"}}`)
	f.Add(uint8(1), uint8(1), uint8(3), "Hi\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>")
	f.Add(uint8(2), uint8(2), uint8(1), `[{"name":"get_weather","arguments":{"a":"\"}"}},{"name":"x","arguments":[]}]`)
	f.Add(uint8(0), uint8(2), uint8(5), `{"name":"get_weather","parameters":{}},"parameters":{`)
	f.Fuzz(func(t *testing.T, which, mode, piece uint8, text string) {
		format := []models.ChatFormat{models.FormatLlama3, models.FormatChatML, models.FormatMistral}[int(which)%3]
		plan := &toolPlan{mode: []toolMode{toolsOff, toolsAuto, toolsForced}[int(mode)%3], known: map[string]bool{"get_weather": true}}
		frames := newToolFrames(&sseFrames{events: newEventFormat(responseMeta{id: "x", model: "m", kind: chatEndpoint}, true)}, format, plan)
		if !utf8.ValidString(text) {
			return // the scheduler sends whole UTF-8 characters
		}
		var out strings.Builder
		runes := []rune(text)
		n := 1 + int(piece)%8
		for len(runes) > 0 {
			k := min(n, len(runes))
			out.Write(frames.text(string(runes[:k]), nil))
			runes = runes[k:]
		}
		out.Write(frames.end(batching.Chunk{Done: true, Finish: batching.FinishStop}))
		content, calls, finish := readEvents(t, out.String())
		if plan.mode == toolsForced {
			return
		}
		msg, wantFinish := toolAnswer(format, plan, batching.Chunk{Text: text, Finish: batching.FinishStop})
		want := ""
		if msg.Content != nil {
			want = *msg.Content
		}
		if content != want || finish != wantFinish || len(calls) != len(msg.ToolCalls) {
			t.Fatalf("streamed %q %s %v; answer %q %s %v", content, finish, calls, want, wantFinish, msg.ToolCalls)
		}
	})
}
