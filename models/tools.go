package models

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
)

// Tool is a function the model may call: the OpenAI request's
// tools[i].function. Parameters is its JSON schema as the client wrote it
// (nil: takes no arguments).
type Tool struct {
	Name        string
	Description string
	Parameters  []byte
}

// ToolCall is one function call of an assistant message. Arguments is
// JSON text of an object.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string
}

// HasToolTurns reports whether msgs hold a tool call or a tool result,
// which only RenderTools renders.
func HasToolTurns(msgs []Message) bool {
	for _, m := range msgs {
		if m.Role == "tool" || len(m.ToolCalls) > 0 {
			return true
		}
	}
	return false
}

// The text the formats' templates put around tool definitions.
const (
	llama3ToolsSystem = "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
	llama3ToolsIntro  = "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n" +
		`Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.` + "Do not use variables.\n\n"
	qwenDefaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
	qwenToolsIntro    = "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
		"You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
	qwenToolsOutro = "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n" +
		"<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
)

// RenderTools is Render for a conversation with tools: the tool
// definitions (none: tools are not offered), assistant messages with
// ToolCalls and tool messages, each in the format's own convention (the
// checkpoints' chat templates):
//
//   - Llama 3.1: a system turn opening "Environment: ipython", the tools
//     as indented JSON at the start of the first user message, calls as
//     {"name": …, "parameters": …} turns (one call per assistant turn:
//     several calls render as consecutive turns), results as ipython turns;
//   - ChatML (Qwen2.5): a "# Tools" section with <tools></tools> in the
//     system message (Qwen's default system message when there is none),
//     calls as <tool_call> blocks, results as <tool_response> blocks in a
//     user turn;
//   - Mistral v0.3: [AVAILABLE_TOOLS] before the last user message, calls
//     as [TOOL_CALLS] [{"name": …, "arguments": …, "id": …}]</s>, results
//     as [TOOL_RESULTS] {"content": …, "call_id": …}[/TOOL_RESULTS], ids as
//     the 9 alphanumeric characters Mistral expects (MistralCallID).
//
// Template markup is in Special segments; tool definitions, arguments and
// results, like all message content, are not. Without tools and tool
// turns it is Render.
func (f ChatFormat) RenderTools(msgs []Message, tools []Tool) ([]Segment, error) {
	if len(tools) == 0 && !HasToolTurns(msgs) {
		return f.Render(msgs)
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("render %s: no messages", f)
	}
	for i, m := range msgs {
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool":
		default:
			return nil, fmt.Errorf("render %s: message %d: unknown role %q (valid: system, user, assistant, tool)", f, i, m.Role)
		}
		if len(m.ToolCalls) > 0 && m.Role != "assistant" {
			return nil, fmt.Errorf("render %s: message %d: only assistant messages have tool calls", f, i)
		}
	}
	var b segments
	var err error
	switch f {
	case FormatLlama3:
		err = b.llama3Tools(msgs, tools)
	case FormatChatML:
		err = b.chatMLTools(msgs, tools)
	case FormatMistral:
		err = b.mistralTools(msgs, tools)
	default:
		err = fmt.Errorf("unknown chat format %q (valid: %s)", f, validFormats)
	}
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", f, err)
	}
	return b.segs, nil
}

func isSystem(m Message) bool { return m.Role == "system" || m.Role == "developer" }

func (b *segments) llama3Tools(msgs []Message, tools []Tool) error {
	trim := func(s string) string { return strings.TrimFunc(s, isPythonSpace) }
	b.special("<|begin_of_text|>")
	rest := msgs
	if len(tools) > 0 {
		system := ""
		if isSystem(rest[0]) {
			system, rest = trim(rest[0].Content), rest[1:]
		}
		b.special("<|start_header_id|>system<|end_header_id|>\n\n" + llama3ToolsSystem)
		b.content(system)
		b.special("<|eot_id|>")
		if len(rest) == 0 || rest[0].Role != "user" {
			return errors.New("the tools go into the first user message: the first message after the system message must be from the user")
		}
		defs, err := toolDefinitions(tools, pyJSONOptions{indent: "    "}, "", "\n\n")
		if err != nil {
			return err
		}
		b.special("<|start_header_id|>user<|end_header_id|>\n\n" + llama3ToolsIntro)
		b.content(defs)
		b.content(trim(rest[0].Content))
		b.special("<|eot_id|>")
		rest = rest[1:]
	}
	for _, m := range rest {
		switch {
		case len(m.ToolCalls) > 0:
			for _, c := range m.ToolCalls {
				call, err := callJSON(c, "parameters", "")
				if err != nil {
					return err
				}
				b.special("<|start_header_id|>assistant<|end_header_id|>\n\n")
				b.content(call)
				b.special("<|eot_id|>")
			}
		case m.Role == "tool":
			b.special("<|start_header_id|>ipython<|end_header_id|>\n\n")
			b.content(m.Content)
			b.special("<|eot_id|>")
		default:
			role := m.Role
			if isSystem(m) {
				role = "system"
			}
			b.special("<|start_header_id|>" + role + "<|end_header_id|>\n\n")
			b.content(trim(m.Content))
			b.special("<|eot_id|>")
		}
		b.turn()
	}
	b.special("<|start_header_id|>assistant<|end_header_id|>\n\n")
	return nil
}

func (b *segments) chatMLTools(msgs []Message, tools []Tool) error {
	rest := msgs
	if len(tools) > 0 {
		system := qwenDefaultSystem
		if isSystem(rest[0]) {
			system, rest = rest[0].Content, rest[1:]
		}
		defs, err := toolDefinitions(tools, pyJSONOptions{}, "\n", "")
		if err != nil {
			return err
		}
		b.special("<|im_start|>system\n")
		b.content(system)
		b.special(qwenToolsIntro)
		b.content(defs)
		b.special(qwenToolsOutro)
		b.turn()
	}
	for i, m := range rest {
		switch {
		case len(m.ToolCalls) > 0:
			b.special("<|im_start|>assistant")
			if m.Content != "" {
				b.special("\n")
				b.content(m.Content)
			}
			for _, c := range m.ToolCalls {
				call, err := callJSON(c, "arguments", "")
				if err != nil {
					return err
				}
				b.special("\n<tool_call>\n")
				b.content(call)
				b.special("\n</tool_call>")
			}
			b.special("<|im_end|>\n")
		case m.Role == "tool":
			if i == 0 || rest[i-1].Role != "tool" {
				b.special("<|im_start|>user")
			}
			b.special("\n<tool_response>\n")
			b.content(m.Content)
			b.special("\n</tool_response>")
			if i == len(rest)-1 || rest[i+1].Role != "tool" {
				b.special("<|im_end|>\n")
			}
		default:
			role := m.Role
			if isSystem(m) {
				role = "system"
			}
			b.special("<|im_start|>" + role + "\n")
			b.content(m.Content)
			b.special("<|im_end|>\n")
		}
		b.turn()
	}
	b.special("<|im_start|>assistant\n")
	return nil
}

// mistralTools renders Mistral v0.3 with tools. As in Render, a leading
// system message folds into the first user message, and the user and
// assistant messages alternate (tool calls and results aside).
func (b *segments) mistralTools(msgs []Message, tools []Tool) error {
	first, system := 0, ""
	if isSystem(msgs[0]) {
		first, system = 1, msgs[0].Content
	}
	lastUser, n := -1, 0
	for i := first; i < len(msgs); i++ {
		m := msgs[i]
		if m.Role == "tool" || len(m.ToolCalls) > 0 {
			continue
		}
		want := "user"
		if n%2 == 1 {
			want = "assistant"
		}
		if m.Role != want {
			return fmt.Errorf("message %d: role %s, want %s (after an optional first system message, roles alternate user/assistant, tool calls and results aside)", i, m.Role, want)
		}
		if m.Role == "user" {
			lastUser = i
		}
		n++
	}
	if lastUser < 0 {
		return errors.New("no user message")
	}
	if last := msgs[len(msgs)-1]; last.Role != "user" && last.Role != "tool" {
		return errors.New("last message must be from the user or a tool")
	}
	b.special("<s>")
	folded := false
	for i := first; i < len(msgs); i++ {
		m := msgs[i]
		switch {
		case m.Role == "user":
			if len(tools) > 0 && i == lastUser {
				defs, err := toolDefinitions(tools, pyJSONOptions{}, "", ", ")
				if err != nil {
					return err
				}
				b.special("[AVAILABLE_TOOLS] ")
				b.content("[" + strings.TrimSuffix(defs, ", ") + "]")
				b.special("[/AVAILABLE_TOOLS]")
			}
			content := m.Content
			if !folded && system != "" {
				content = system + "\n\n" + content
			}
			folded = true
			b.special("[INST] ")
			b.content(content)
			b.special(" [/INST]")
		case len(m.ToolCalls) > 0:
			calls := make([]string, len(m.ToolCalls))
			for j, c := range m.ToolCalls {
				call, err := callJSON(c, "arguments", MistralCallID(c.ID))
				if err != nil {
					return err
				}
				calls[j] = call
			}
			b.special("[TOOL_CALLS] ")
			b.content("[" + strings.Join(calls, ", ") + "]")
			b.special("</s>")
		case m.Role == "tool":
			result := appendPyString([]byte(`{"content": `), m.Content)
			result = append(result, `, "call_id": "`+MistralCallID(m.ToolCallID)+`"}`...)
			b.special("[TOOL_RESULTS] ")
			b.content(string(result))
			b.special("[/TOOL_RESULTS]")
		default:
			b.content(m.Content)
			b.special("</s>")
		}
		b.turn()
	}
	return nil
}

// toolDefinitions renders each tool as the templates do,
// {"type": "function", "function": {"name", "description", "parameters"}},
// each between before and after.
func toolDefinitions(tools []Tool, o pyJSONOptions, before, after string) (string, error) {
	var sb strings.Builder
	for _, t := range tools {
		raw := appendPyString([]byte(`{"type":"function","function":{"name":`), t.Name)
		if t.Description != "" {
			raw = appendPyString(append(raw, `,"description":`...), t.Description)
		}
		if len(t.Parameters) > 0 {
			raw = append(append(raw, `,"parameters":`...), t.Parameters...)
		}
		raw = append(raw, "}}"...)
		out, err := pyJSON(raw, o)
		if err != nil {
			return "", fmt.Errorf("tool %s: %w", t.Name, err)
		}
		sb.WriteString(before)
		sb.Write(out)
		sb.WriteString(after)
	}
	return sb.String(), nil
}

// callJSON renders a call as {"name": …, "<argsKey>": …} with Python's
// separators, and "id" last when set.
func callJSON(c ToolCall, argsKey, id string) (string, error) {
	args := c.Arguments
	if strings.TrimSpace(args) == "" {
		args = "{}"
	}
	out, err := pyJSON([]byte(args), pyJSONOptions{})
	if err != nil {
		return "", fmt.Errorf("tool call %s: arguments: %w", c.Name, err)
	}
	b := appendPyString([]byte(`{"name": `), c.Name)
	b = append(b, `, "`+argsKey+`": `...)
	b = append(b, out...)
	if id != "" {
		b = append(b, `, "id": "`+id+`"`...)
	}
	return string(append(b, '}')), nil
}

// MistralCallID is the 9 alphanumeric characters Mistral's templates
// require of a call id: id itself when it is one, else a hash of it, so a
// call and the result that names it get the same.
func MistralCallID(id string) string {
	if len(id) == 9 && isAlnum(id) {
		return id
	}
	const digits = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	h := fnv.New64a()
	h.Write([]byte(id))
	v := h.Sum64()
	out := make([]byte, 9)
	for i := range out {
		out[i] = digits[v%uint64(len(digits))]
		v /= uint64(len(digits))
	}
	return string(out)
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
