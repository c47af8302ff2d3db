package models

// Message is one chat turn.
type Message struct {
	Role    string // system (or developer), user or assistant
	Content string
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
