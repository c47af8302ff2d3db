package models

import (
	"context"
	"fmt"
)

// Message is one chat turn.
type Message struct {
	Role    string // system (or developer), user, assistant or tool
	Content string
	// ToolCalls are an assistant message's function calls, ToolCallID
	// the call a tool message answers (RenderTools renders both).
	ToolCalls  []ToolCall
	ToolCallID string
}

// Segment is a piece of a rendered prompt. Special segments are the
// template's own markup and may contain control-token text
// (<|start_header_id|>, <|im_start|>, [INST]); they are tokenized with
// control-token parsing on. Message content is never Special, so a user
// cannot inject control tokens.
type Segment struct {
	Text    string
	Special bool
}

// Tokenizer turns text into token ids; parseSpecial makes control-token
// text (<|eot_id|>) a control token. MUST be goroutine-safe.
type Tokenizer interface {
	Tokenize(text string, parseSpecial bool) ([]int32, error)
}

// TokenizeSegments tokenizes a rendered prompt: markup with control-token
// parsing, message content without. It checks ctx before each segment, so
// a request's deadline bounds the work.
func TokenizeSegments(ctx context.Context, tok Tokenizer, segs []Segment) ([]int32, error) {
	var prompt []int32
	for _, seg := range segs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ids, err := tok.Tokenize(seg.Text, seg.Special)
		if err != nil {
			return nil, fmt.Errorf("tokenize prompt: %w", err)
		}
		prompt = append(prompt, ids...)
	}
	return prompt, nil
}
