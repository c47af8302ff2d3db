package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/models"
	"github.com/nextact/nextact/nextaction"
)

// Bounds of the tool fields of a chat request.
const (
	maxTools            = 128
	maxToolDescBytes    = 8 << 10
	maxToolCallsPerMsg  = 128
	maxToolCallIDBytes  = 128
	maxParallelCalls    = 4 // calls of one forced answer where the format allows several
	toolChoiceParam     = "tool_choice"
	toolChoiceNameParam = "tool_choice.function.name"
)

// toolNameRE is OpenAI's rule for function names.
var toolNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// toolMode is how a request's answer may use its tools.
type toolMode int

const (
	toolsOff    toolMode = iota // tool_choice none, or no tools: content only
	toolsAuto                   // free generation, parsed for calls afterwards
	toolsForced                 // required or named: a call under the grammar
)

// toolPlan is a chat request's validated tools and tool_choice.
type toolPlan struct {
	mode toolMode
	// tools are rendered into the prompt (nil when off).
	tools []models.Tool
	// known holds the names a call may take (auto: all tools; forced:
	// the allowed ones).
	known map[string]bool
	// schema is the forced answer's JSON schema (CallSchema).
	schema []byte
	// blocks, above 1, is how many call blocks a forced answer may hold
	// (models.ChatFormat.CallBlocks), each a value of schema.
	blocks int
}

func (p *toolPlan) isKnown(name string) bool { return p.known[name] }

type toolSpec struct {
	Type     string `json:"type"`
	Function *struct {
		Name        string          `json:"name"`
		Description json.RawMessage `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

type toolChoiceObject struct {
	Type     string `json:"type"`
	Function *struct {
		Name string `json:"name"`
	} `json:"function"`
}

// toolPlan validates tools, tool_choice and parallel_tool_calls, and for a
// forced call compiles the answer's grammar. Each tool's parameters are
// checked on their own first (the compiler's counting pass, linear in the
// schema), so that a schema the compiler refuses is a 400 naming it; only
// a forced call builds a grammar, one for the allowed tools together.
func (r *chatRequest) toolPlan(m *Model) (toolPlan, error) {
	tools, err := parseTools(r.Tools, m)
	if err != nil {
		return toolPlan{}, err
	}
	plan := toolPlan{mode: toolsOff}
	choice, named, err := parseToolChoice(r.ToolChoice)
	if err != nil {
		return plan, err
	}
	if choice == "" {
		choice = "none"
		if len(tools) > 0 {
			choice = "auto"
		}
	}
	if len(tools) == 0 && choice != "none" && choice != "auto" {
		return plan, invalid(toolChoiceParam, "'tool_choice' %q needs 'tools': the request declares none.", choice)
	}
	if choice == "none" || len(tools) == 0 {
		return plan, nil
	}
	plan.tools = tools
	plan.known = make(map[string]bool, len(tools))
	allowed := tools
	switch choice {
	case "auto":
		plan.mode = toolsAuto
	case "required":
		plan.mode = toolsForced
	case "function":
		plan.mode = toolsForced
		allowed = nil
		for _, t := range tools {
			if t.Name == named {
				allowed = []models.Tool{t}
			}
		}
		if allowed == nil {
			return plan, invalid(toolChoiceNameParam, "'tool_choice' names the function %q, which is not among 'tools'.", named)
		}
	}
	for _, t := range allowed {
		plan.known[t.Name] = true
	}
	if r.ResponseFormat != nil && r.ResponseFormat.Type != "text" {
		return plan, invalid("response_format", "'response_format' %q cannot be combined with tools unless tool_choice is \"none\".", r.ResponseFormat.Type)
	}
	if plan.mode == toolsForced {
		parallel := r.ParallelToolCalls == nil || *r.ParallelToolCalls
		if plan.schema, plan.blocks, err = forcedSchema(m, allowed, parallel); err != nil {
			return plan, err
		}
	}
	return plan, nil
}

// forcedSchema is the schema of a forced answer, compiled once here so
// that its errors name tools. Where the format allows several calls and
// parallel calls are on, it allows up to maxParallelCalls (as an array,
// or as that many blocks), or one when that many are over the grammar's
// size limit.
func forcedSchema(m *Model, allowed []models.Tool, parallel bool) (schema []byte, blocks int, err error) {
	_, _, asBlocks := m.Format.CallBlocks()
	calls := 1
	if parallel && (asBlocks || m.Format.ParallelCalls()) {
		calls = maxParallelCalls
	}
	for {
		// CallSchema holds several calls only where they are an array.
		if schema, err = m.Format.CallSchema(allowed, calls); err != nil {
			return nil, 0, invalid("tools", "The tools cannot be compiled into a call grammar: %v.", err)
		}
		_, err = m.Grammars.JSON(schema)
		if err == nil && asBlocks && calls > 1 {
			_, err = callBlocks(m, schema, calls)
		}
		var le *nextaction.LimitError
		switch {
		case err == nil && asBlocks:
			return schema, calls, nil
		case err == nil:
			return schema, 1, nil
		case calls > 1 && errors.As(err, &le):
			calls = 1
			continue
		}
		code, msg := nextaction.SchemaError(err)
		return nil, 0, &requestError{param: "tools", code: code, msg: "The tools together are too large for a forced call: " + msg}
	}
}

// callBlocks is the constraint of up to n call blocks of schema.
func callBlocks(m *Model, schema []byte, n int) (*nextaction.ByteConstraint, error) {
	closeText, openText, _ := m.Format.CallBlocks()
	return m.Grammars.JSONBlocks(schema, closeText, openText, n)
}

// parseTools reads the tools field: at most maxTools functions with
// unique valid names, each one's parameters a JSON schema the grammar
// compiler accepts (CheckSchema).
func parseTools(raw json.RawMessage, m *Model) ([]models.Tool, error) {
	if isNull(raw) {
		return nil, nil
	}
	var specs []json.RawMessage
	if err := json.Unmarshal(raw, &specs); err != nil {
		return nil, invalid("tools", "'tools' must be an array of tools.")
	}
	if len(specs) > maxTools {
		return nil, invalid("tools", "'tools' holds %d tools; at most %d are allowed.", len(specs), maxTools)
	}
	tools := make([]models.Tool, 0, len(specs))
	seen := make(map[string]int, len(specs))
	for i, rawSpec := range specs {
		param := fmt.Sprintf("tools[%d]", i)
		var s toolSpec
		if err := json.Unmarshal(rawSpec, &s); err != nil {
			return nil, invalid(param, "'%s' must be an object {\"type\": \"function\", \"function\": {...}}.", param)
		}
		if s.Type != "function" {
			return nil, invalid(param+".type", "'%s.type' must be \"function\", got %q.", param, s.Type)
		}
		if s.Function == nil {
			return nil, invalid(param+".function", "'%s.function' is required.", param)
		}
		f := s.Function
		if !toolNameRE.MatchString(f.Name) {
			return nil, invalid(param+".function.name", "'%s.function.name' must be 1 to 64 letters, digits, underscores or dashes, got %q.", param, truncate(f.Name, 80))
		}
		if j, dup := seen[f.Name]; dup {
			return nil, invalid(param+".function.name", "'%s.function.name' %q repeats tools[%d]: tool names must be unique.", param, f.Name, j)
		}
		seen[f.Name] = i
		t := models.Tool{Name: f.Name}
		if !isNull(f.Description) {
			if err := json.Unmarshal(f.Description, &t.Description); err != nil {
				return nil, invalid(param+".function.description", "'%s.function.description' must be a string.", param)
			}
			if len(t.Description) > maxToolDescBytes {
				return nil, invalid(param+".function.description", "'%s.function.description' has %d bytes; at most %d are allowed.", param, len(t.Description), maxToolDescBytes)
			}
		}
		if !isNull(f.Parameters) {
			pp := param + ".function.parameters"
			if t := bytes.TrimSpace(f.Parameters); t[0] != '{' {
				return nil, invalid(pp, "'%s' must be a JSON Schema object.", pp)
			}
			if why := models.ToolParametersError(f.Parameters); why != "" {
				return nil, invalid(pp, "'%s': %s.", pp, why)
			}
			t.Parameters = f.Parameters
		}
		tools = append(tools, t)
	}
	if len(tools) > 0 && m.Grammars == nil {
		return nil, invalid("tools", "The model %q does not support tools.", m.ID)
	}
	for i, t := range tools {
		if t.Parameters == nil {
			continue
		}
		if err := m.Grammars.CheckSchema(t.Parameters); err != nil {
			pp := fmt.Sprintf("tools[%d].function.parameters", i)
			code, msg := nextaction.SchemaError(err)
			return nil, &requestError{param: pp, code: code, msg: fmt.Sprintf("'%s': %s", pp, msg)}
		}
	}
	return tools, nil
}

// parseToolChoice reads tool_choice: "" (absent), none, auto, required, or
// "function" with the name of {"type": "function", "function": {"name"}}.
func parseToolChoice(raw json.RawMessage) (choice, name string, err error) {
	if isNull(raw) {
		return "", "", nil
	}
	if json.Unmarshal(raw, &choice) == nil {
		switch choice {
		case "none", "auto", "required":
			return choice, "", nil
		}
		return "", "", invalid(toolChoiceParam, "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}, got %q.", truncate(choice, 80))
	}
	var obj toolChoiceObject
	if json.Unmarshal(raw, &obj) != nil || obj.Type != "function" || obj.Function == nil {
		return "", "", invalid(toolChoiceParam, "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}.")
	}
	if !toolNameRE.MatchString(obj.Function.Name) {
		return "", "", invalid(toolChoiceNameParam, "'tool_choice.function.name' must be 1 to 64 letters, digits, underscores or dashes.")
	}
	return "function", obj.Function.Name, nil
}

type toolCallSpec struct {
	ID       *string `json:"id"`
	Type     string  `json:"type"`
	Function *struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// toolFields reads message i's tool_calls (assistant) and tool_call_id
// (tool) into out.
func toolFields(m chatMessage, i int, out *models.Message) error {
	if m.Role == "tool" {
		param := fmt.Sprintf("messages[%d].tool_call_id", i)
		if m.ToolCallID == nil || *m.ToolCallID == "" {
			return invalid(param, "'%s' is required in a message of role tool.", param)
		}
		if len(*m.ToolCallID) > maxToolCallIDBytes {
			return invalid(param, "'%s' has %d bytes; at most %d are allowed.", param, len(*m.ToolCallID), maxToolCallIDBytes)
		}
		out.ToolCallID = *m.ToolCallID
	}
	if isEmptyArray(m.ToolCalls) {
		return nil
	}
	param := fmt.Sprintf("messages[%d].tool_calls", i)
	if m.Role != "assistant" {
		return invalid(param, "'%s' is allowed only in assistant messages.", param)
	}
	var specs []toolCallSpec
	if err := json.Unmarshal(m.ToolCalls, &specs); err != nil {
		return invalid(param, "'%s' must be an array of {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}.", param)
	}
	if len(specs) > maxToolCallsPerMsg {
		return invalid(param, "'%s' holds %d calls; at most %d are allowed.", param, len(specs), maxToolCallsPerMsg)
	}
	out.ToolCalls = make([]models.ToolCall, len(specs))
	for j, s := range specs {
		p := fmt.Sprintf("%s[%d]", param, j)
		switch {
		case s.ID == nil || *s.ID == "":
			return invalid(p+".id", "'%s.id' is required.", p)
		case len(*s.ID) > maxToolCallIDBytes:
			return invalid(p+".id", "'%s.id' has %d bytes; at most %d are allowed.", p, len(*s.ID), maxToolCallIDBytes)
		case s.Type != "function":
			return invalid(p+".type", "'%s.type' must be \"function\".", p)
		case s.Function == nil:
			return invalid(p+".function", "'%s.function' is required.", p)
		case !toolNameRE.MatchString(s.Function.Name):
			return invalid(p+".function.name", "'%s.function.name' must be 1 to 64 letters, digits, underscores or dashes.", p)
		}
		var args string
		if err := json.Unmarshal(s.Function.Arguments, &args); err != nil {
			return invalid(p+".function.arguments", "'%s.function.arguments' must be a string of JSON.", p)
		}
		if err := models.CheckArguments(args); err != nil {
			return invalid(p+".function.arguments", "'%s.function.arguments' must be a JSON object: %v.", p, err)
		}
		out.ToolCalls[j] = models.ToolCall{ID: *s.ID, Name: s.Function.Name, Arguments: args}
	}
	return nil
}

// toolPrompt renders msgs with the plan's tools and, for a forced call,
// the format's call marker after the generation prompt.
func toolPrompt(ctx context.Context, m *Model, msgs []models.Message, plan *toolPlan) ([]int32, error) {
	segs, err := m.Format.RenderTools(msgs, plan.tools)
	if err != nil {
		return nil, invalid("messages", "The messages cannot be rendered for this model: %v.", err)
	}
	if prefix := m.Format.CallPrefix(); plan.mode == toolsForced && prefix != "" {
		segs = append(segs, models.Segment{Text: prefix, Special: true})
	}
	return models.TokenizeSegments(ctx, m.Tokenizer, segs)
}

// generateTools answers a chat request whose tools are on (or whose
// history holds tool turns): a forced call decodes under the plan's
// grammar; an answer is parsed for calls at its end. n (the request's)
// must be 1.
func (s *Server) generateTools(ctx context.Context, c *fiber.Ctx, m *Model, msgs []models.Message, opts genOptions, plan *toolPlan, n *int) error {
	if n != nil && *n != 1 {
		return invalid("n", "'n' must be 1 with tools or tool messages: nextact answers them with one choice, got %d.", *n)
	}
	if opts.stream && opts.lp.logprobs {
		return invalid("logprobs", "'logprobs' is not supported when streaming with tools or tool messages: leave stream off to get them.")
	}
	prompt, err := toolPrompt(ctx, m, msgs, plan)
	if err != nil {
		return err
	}
	if plan.mode == toolsForced {
		opts.format = &responseFormat{Type: "json_schema", JSONSchema: &jsonSchemaSpec{Name: "tool_call", Schema: plan.schema}}
	} else {
		opts.stop = append(opts.stop, m.Format.StopStrings()...)
	}
	req, err := s.prepare(ctx, c, m, prompt, opts, "messages")
	if err != nil {
		return err
	}
	if plan.blocks > 1 {
		// Several call blocks: the grammar of one call, repeated (the
		// same first value, so the same budget check).
		if req.Constraint, err = callBlocks(m, plan.schema, plan.blocks); err != nil {
			return err
		}
	}
	meta := s.newMeta(m, chatEndpoint)
	if opts.stream {
		return s.startGeneration(ctx, c, m, req, "text/event-stream",
			newToolFrames(&sseFrames{events: newEventFormat(meta, opts.includeUsage), includeUsage: opts.includeUsage, errorEvent: s.errorEvent}, m.Format, plan),
			holdLease(c))
	}
	res, err := s.waitResult(ctx, c, m, req)
	if err != nil {
		return err
	}
	msg, finish := toolAnswer(m.Format, plan, res)
	return c.JSON(toolChatResponse{
		ID: meta.id, Object: "chat.completion", Created: meta.created, Model: meta.model,
		Usage:   newUsageBody(res.Usage),
		Choices: []toolChatChoice{{Message: msg, Logprobs: opts.lp.chatLogprobs(m.Vocab, res), FinishReason: finish}},
	})
}

// toolAnswer turns a finished generation into the assistant message: its
// calls when it is one (finish reason tool_calls), else its content.
func toolAnswer(f models.ChatFormat, plan *toolPlan, res batching.Chunk) (toolMessageBody, string) {
	content, calls := answerCalls(f, plan, res.Text)
	if len(calls) == 0 {
		return toolMessageBody{Role: "assistant", Content: &content}, res.Finish.String()
	}
	body := toolMessageBody{Role: "assistant", ToolCalls: make([]toolCallBody, len(calls))}
	if content != "" {
		body.Content = &content
	}
	for i, c := range calls {
		body.ToolCalls[i] = toolCallBody{ID: newCallID(), Type: "function", Function: toolFunctionBody{Name: c.Name, Arguments: c.Arguments}}
	}
	return body, "tool_calls"
}

// answerCalls parses text by the plan's mode: the calls and the content
// before them, or no calls and text as content.
func answerCalls(f models.ChatFormat, plan *toolPlan, text string) (string, []models.ToolCall) {
	switch plan.mode {
	case toolsForced:
		if calls, ok := f.ParseForced(text, plan.isKnown); ok {
			return "", calls
		}
	case toolsAuto:
		if content, calls, ok := f.ParseToolCalls(text, plan.isKnown); ok {
			return content, calls
		}
	}
	return text, nil
}

// newCallID is a fresh call id, call_ and 24 base-36 characters.
func newCallID() string {
	b := []byte("call_")
	for len(b) < 29 {
		b = strconv.AppendUint(b, rand.Uint64()%(36*36*36*36*36*36), 36)
	}
	return string(b[:29])
}

type toolChatResponse struct {
	ID      string           `json:"id"`
	Object  string           `json:"object"`
	Created int64            `json:"created"`
	Model   string           `json:"model"`
	Choices []toolChatChoice `json:"choices"`
	Usage   usageBody        `json:"usage"`
}

type toolChatChoice struct {
	Index        int             `json:"index"`
	Message      toolMessageBody `json:"message"`
	Logprobs     any             `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

// toolMessageBody is an assistant message that may hold tool calls; its
// content is null when it holds only calls.
type toolMessageBody struct {
	Role      string         `json:"role"`
	Content   *string        `json:"content"`
	ToolCalls []toolCallBody `json:"tool_calls,omitempty"`
}

type toolCallBody struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"`
	Function toolFunctionBody `json:"function"`
}

type toolFunctionBody struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}
