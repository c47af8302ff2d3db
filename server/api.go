package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/nextact/nextact/models"
)

// chatRequest is the body of POST /v1/chat/completions. Fields nextact
// does not know are ignored.
type chatRequest struct {
	Model       string          `json:"model"`
	Messages    []chatMessage   `json:"messages"`
	Logprobs    bool            `json:"logprobs"`
	TopLogprobs *int            `json:"top_logprobs"`
	Tools       json.RawMessage `json:"tools"`
	// ToolChoice shadows unhonouredParams.ToolChoice: chat honours it
	// (tools.go).
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	genParams
}

type chatMessage struct {
	Role string `json:"role"`
	// Content is a string, null, or an array of {"type":"text","text":…}.
	Content json.RawMessage `json:"content"`
	// ToolCalls (assistant) and ToolCallID (tool): see toolFields.
	ToolCalls  json.RawMessage `json:"tool_calls"`
	ToolCallID *string         `json:"tool_call_id"`
}

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	Model string `json:"model"`
	// Prompt is a string, an array of strings, an array of token ids or
	// an array of arrays of token ids (see prompts).
	Prompt   json.RawMessage `json:"prompt"`
	Echo     bool            `json:"echo"`
	Logprobs *int            `json:"logprobs"`
	// Suffix and BestOf are not honoured: accepted only at their neutral
	// values ("" and 1).
	Suffix json.RawMessage `json:"suffix"`
	BestOf json.RawMessage `json:"best_of"`
	genParams
}

// genParams are the generation fields both endpoints share.
type genParams struct {
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	TopK                *int            `json:"top_k"`
	Seed                *int64          `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	N                   *int            `json:"n"`
	ResponseFormat      *responseFormat `json:"response_format"`
	penaltyParams
	unhonouredParams
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type responseFormat struct {
	Type       string          `json:"type"`
	JSONSchema *jsonSchemaSpec `json:"json_schema"`
}

type jsonSchemaSpec struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema"`
	Strict *bool           `json:"strict"`
}

// decodeJSON parses a request body, turning decoding errors into 400s that
// name the field where possible.
func decodeJSON(body []byte, v any) error {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return invalid("", "The request body is empty; expected a JSON object.")
	case errors.As(err, &typ) && typ.Field != "":
		// encoding/json names struct fields only, without array indexes
		// (and fields of embedded structs by the Go type): the path comes
		// from the body itself.
		field := jsonPathAt(body, typ.Offset)
		if field == "" {
			field = strings.TrimPrefix(typ.Field, "genParams.")
		}
		return invalid(field, "Invalid type for '%s': expected %s, got JSON %s.", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.As(err, &typ):
		return invalid("", "The request body must be a JSON object, got JSON %s.", typ.Value)
	case errors.As(err, &syntax):
		return invalid("", "The request body is not valid JSON: %v.", err)
	}
	return invalid("", "The request body could not be parsed: %v.", err)
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"), strings.HasPrefix(goKind, "uint"):
		return "an integer"
	case strings.HasPrefix(goKind, "float"):
		return "a number"
	case goKind == "bool":
		return "a boolean"
	case goKind == "string":
		return "a string"
	case goKind == "slice":
		return "an array"
	}
	return "an object"
}

// isNull reports whether raw is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// isEmptyArray reports whether raw is absent, null or an empty array.
func isEmptyArray(raw json.RawMessage) bool {
	if isNull(raw) {
		return true
	}
	var arr []json.RawMessage
	return json.Unmarshal(raw, &arr) == nil && len(arr) == 0
}

// messages converts the chat messages, checking roles and content parts,
// and that there are at most max of them.
func (r *chatRequest) messages(max int) ([]models.Message, error) {
	if len(r.Messages) == 0 {
		return nil, invalid("messages", "'messages' must be a non-empty array.")
	}
	if len(r.Messages) > max {
		return nil, &requestError{param: "messages", code: "too_many_messages",
			msg: fmt.Sprintf("'messages' holds %d messages; at most %d are allowed.", len(r.Messages), max)}
	}
	out := make([]models.Message, len(r.Messages))
	for i, m := range r.Messages {
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool":
		default:
			return nil, invalid(fmt.Sprintf("messages[%d].role", i),
				"Invalid role %q in messages[%d]: expected system, developer, user, assistant or tool.", m.Role, i)
		}
		text, err := messageText(m.Content, i)
		if err != nil {
			return nil, err
		}
		out[i] = models.Message{Role: m.Role, Content: text}
		if err := toolFields(m, i, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type contentPart struct {
	Type string  `json:"type"`
	Text *string `json:"text"`
}

// messageText reads a message's content: a string, null, or text parts
// (joined by newlines).
func messageText(raw json.RawMessage, i int) (string, error) {
	param := fmt.Sprintf("messages[%d].content", i)
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []contentPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", invalid(param, "Invalid content in messages[%d]: expected a string or an array of text parts.", i)
	}
	texts := make([]string, 0, len(parts))
	for j, p := range parts {
		if p.Type != "text" {
			return "", invalid(param, "Content part type %q in messages[%d].content[%d] is not supported: only \"text\" is.", p.Type, i, j)
		}
		if p.Text == nil {
			return "", invalid(param, "messages[%d].content[%d] has no 'text'.", i, j)
		}
		texts = append(texts, *p.Text)
	}
	return strings.Join(texts, "\n"), nil
}

// completionPrompt is one prompt of /v1/completions: text, or token ids
// used as given (no BOS added).
type completionPrompt struct {
	text  string
	ids   []int32
	isIDs bool
}

// maxPrompts bounds the prompts of one /v1/completions request.
const maxPrompts = 64

// prompts reads the prompt field in each of OpenAI's forms: a string, an
// array of strings, an array of token ids, or an array of arrays of token
// ids; at most maxPrompts prompts. Token ids are checked against the
// vocabulary (vocabSize; 0: not checked here) before anything reaches the
// engine.
func (r *completionRequest) prompts(vocabSize int) ([]completionPrompt, error) {
	if isNull(r.Prompt) {
		return nil, invalid("prompt", "'prompt' is required.")
	}
	bad := invalid("prompt", "'prompt' must be a string, an array of strings, an array of token ids or an array of arrays of token ids.")
	var one string
	if err := json.Unmarshal(r.Prompt, &one); err == nil {
		return []completionPrompt{{text: one}}, nil
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(r.Prompt, &arr); err != nil {
		return nil, bad
	}
	if len(arr) == 0 {
		return nil, invalid("prompt", "'prompt' must not be an empty array.")
	}
	// An array of numbers is one prompt of token ids.
	if t := bytes.TrimSpace(arr[0]); len(t) > 0 && (t[0] == '-' || t[0] >= '0' && t[0] <= '9') {
		ids, err := tokenIDs(r.Prompt, "prompt", vocabSize)
		if err != nil {
			return nil, err
		}
		return []completionPrompt{{ids: ids, isIDs: true}}, nil
	}
	if len(arr) > maxPrompts {
		return nil, invalid("prompt", "'prompt' holds %d prompts; at most %d are allowed.", len(arr), maxPrompts)
	}
	out := make([]completionPrompt, len(arr))
	for i, raw := range arr {
		param := fmt.Sprintf("prompt[%d]", i)
		if err := json.Unmarshal(raw, &out[i].text); err == nil {
			continue
		}
		if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '[' {
			return nil, bad
		}
		ids, err := tokenIDs(raw, param, vocabSize)
		if err != nil {
			return nil, err
		}
		out[i] = completionPrompt{ids: ids, isIDs: true}
	}
	return out, nil
}

// tokenIDs reads a non-empty array of token ids within the vocabulary.
func tokenIDs(raw json.RawMessage, param string, vocabSize int) ([]int32, error) {
	var ids []int64
	if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, invalid(param, "'%s' must be an array of integer token ids.", param)
	}
	if len(ids) == 0 {
		return nil, invalid(param, "'%s' must not be empty.", param)
	}
	out := make([]int32, len(ids))
	for i, id := range ids {
		if id < 0 || vocabSize > 0 && id >= int64(vocabSize) || id > math.MaxInt32 {
			return nil, invalid(param, "token id %d at %s[%d] is outside the vocabulary of %d tokens.", id, param, i, vocabSize)
		}
		out[i] = int32(id)
	}
	return out, nil
}

// stops reads the stop field: null, a string, or at most maxStops strings of
// at most maxBytes bytes each. Empty strings are dropped.
func (p *genParams) stops(maxBytes int) ([]string, error) {
	if isNull(p.Stop) {
		return nil, nil
	}
	var many []string
	var one string
	if err := json.Unmarshal(p.Stop, &one); err == nil {
		many = []string{one}
	} else if err := json.Unmarshal(p.Stop, &many); err != nil {
		return nil, invalid("stop", "'stop' must be a string or an array of strings.")
	}
	if len(many) > maxStops {
		return nil, invalid("stop", "'stop' holds %d strings; at most %d are allowed.", len(many), maxStops)
	}
	out := many[:0]
	for i, s := range many {
		if len(s) > maxBytes {
			return nil, invalid("stop", "stop string %d has %d bytes; at most %d are allowed.", i, len(s), maxBytes)
		}
		if s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

const maxStops = 16

// Response bodies.

type usageBody struct {
	PromptTokens        int                 `json:"prompt_tokens"`
	CompletionTokens    int                 `json:"completion_tokens"`
	TotalTokens         int                 `json:"total_tokens"`
	PromptTokensDetails promptTokensDetails `json:"prompt_tokens_details"`
}

// promptTokensDetails: cached_tokens are prompt tokens whose KV was reused.
type promptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   usageBody    `json:"usage"`
}

type chatChoice struct {
	Index        int              `json:"index"`
	Message      assistantMessage `json:"message"`
	Logprobs     any              `json:"logprobs"`
	FinishReason string           `json:"finish_reason"`
}

type assistantMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type completionResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []textChoice `json:"choices"`
	Usage   usageBody    `json:"usage"`
}

type textChoice struct {
	Index        int    `json:"index"`
	Text         string `json:"text"`
	Logprobs     any    `json:"logprobs"`
	FinishReason string `json:"finish_reason"`
}
