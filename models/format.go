package models

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// ChatFormat names a chat prompt format.
type ChatFormat string

// The chat formats nextact renders.
const (
	// FormatLlama3 is the Llama-3 instruct format (Llama-3.x).
	FormatLlama3 ChatFormat = "llama3"
	// FormatChatML is ChatML as used by Qwen2.5.
	FormatChatML ChatFormat = "chatml"
	// FormatMistral is the Mistral v0.3 [INST] format.
	FormatMistral ChatFormat = "mistral"
)

const validFormats = "llama3, chatml, mistral"

// ParseChatFormat returns the format with the given name (llama3, chatml or
// mistral; case and surrounding space are ignored).
func ParseChatFormat(name string) (ChatFormat, error) {
	switch f := ChatFormat(strings.ToLower(strings.TrimSpace(name))); f {
	case FormatLlama3, FormatChatML, FormatMistral:
		return f, nil
	}
	return "", fmt.Errorf("unknown chat format %q (valid: %s)", name, validFormats)
}

// DetectChatFormat picks the format of a GGUF tokenizer.chat_template
// (Jinja text) by its markers. An empty or unrecognised template is an
// error telling the operator to choose a format with --chat-format.
func DetectChatFormat(template string) (ChatFormat, error) {
	switch {
	case strings.Contains(template, "<|start_header_id|>"):
		return FormatLlama3, nil
	case strings.Contains(template, "<|im_start|>"):
		return FormatChatML, nil
	case strings.Contains(template, "[INST]"):
		return FormatMistral, nil
	case strings.TrimSpace(template) == "":
		return "", fmt.Errorf("chat template is empty, so not recognised: choose one with --chat-format (%s)", validFormats)
	}
	return "", fmt.Errorf("chat template not recognised: choose one with --chat-format (%s)", validFormats)
}

// StopStrings returns the format's textual end-of-turn markers, a fallback
// for engines that report control tokens as text. The slice is fresh.
func (f ChatFormat) StopStrings() []string {
	switch f {
	case FormatLlama3:
		return []string{"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"}
	case FormatChatML:
		return []string{"<|im_end|>", "<|endoftext|>"}
	case FormatMistral:
		return []string{"</s>"}
	}
	return nil
}

// Render turns msgs into a prompt that ends with the generation prompt for
// the assistant. Template markup is in Special segments, message content in
// plain ones (empty content yields no segment). Roles are system, user,
// assistant and developer (rendered as system). Llama 3 trims each
// message's surrounding whitespace, as Meta's templates do. Mistral folds a leading
// system message into the first user message and needs user/assistant
// turns that alternate and end with the user.
func (f ChatFormat) Render(msgs []Message) ([]Segment, error) {
	segs, _, err := f.RenderSpans(msgs)
	return segs, err
}

// RenderSpans is Render that also tells which segments each message
// produced: message i's are segs[ends[i-1]:ends[i]] (from 0 for i = 0),
// and segs[ends[len(msgs)-1]:] is what follows the last message (the
// generation prompt). Markup that opens the prompt (<|begin_of_text|>,
// <s>) counts with the first message that renders anything. No segment
// spans two messages, so a prompt's tokens are its messages' tokens end to
// end, and a message renders the same wherever it stands, except where the
// format folds the system message into the first user message
// (FoldsSystem): there the system message renders no segment of its own.
func (f ChatFormat) RenderSpans(msgs []Message) (segs []Segment, ends []int, err error) {
	if len(msgs) == 0 {
		return nil, nil, fmt.Errorf("render %s: no messages", f)
	}
	roles := make([]string, len(msgs))
	for i, m := range msgs {
		switch m.Role {
		case "system", "developer":
			roles[i] = "system"
		case "user", "assistant":
			roles[i] = m.Role
		default:
			return nil, nil, fmt.Errorf("render %s: message %d: unknown role %q (valid: system, user, assistant)", f, i, m.Role)
		}
	}
	b := segments{ends: make([]int, 0, len(msgs))}
	switch f {
	case FormatLlama3:
		b.special("<|begin_of_text|>")
		for i, m := range msgs {
			b.special("<|start_header_id|>" + roles[i] + "<|end_header_id|>\n\n")
			b.content(strings.TrimFunc(m.Content, isPythonSpace))
			b.special("<|eot_id|>")
			b.turn()
		}
		b.special("<|start_header_id|>assistant<|end_header_id|>\n\n")
	case FormatChatML:
		for i, m := range msgs {
			b.special("<|im_start|>" + roles[i] + "\n")
			b.content(m.Content)
			b.special("<|im_end|>\n")
			b.turn()
		}
		b.special("<|im_start|>assistant\n")
	case FormatMistral:
		if err := b.mistral(msgs, roles); err != nil {
			return nil, nil, fmt.Errorf("render %s: %w", f, err)
		}
	default:
		return nil, nil, fmt.Errorf("render: unknown chat format %q (valid: %s)", f, validFormats)
	}
	return b.segs, b.ends, nil
}

// FoldsSystem reports whether the format renders a leading system message
// inside the first user message (Mistral) rather than as a turn of its
// own.
func (f ChatFormat) FoldsSystem() bool { return f == FormatMistral }

// isPythonSpace is Python's str.isspace for one character: the Llama-3
// templates trim every message (Jinja's trim filter, Python's str.strip),
// and the checkpoints were trained on prompts rendered by them. It is
// unicode.IsSpace plus the separators U+001C to U+001F.
func isPythonSpace(r rune) bool {
	return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f
}

// mistral renders the Mistral v0.3 format:
// <s>[INST] user [/INST]assistant</s>[INST] user [/INST].
func (b *segments) mistral(msgs []Message, roles []string) error {
	first, system := 0, ""
	if roles[0] == "system" {
		first, system = 1, msgs[0].Content
	}
	if first == len(msgs) {
		return errors.New("no user message")
	}
	for i := first; i < len(msgs); i++ {
		want := "user"
		if (i-first)%2 == 1 {
			want = "assistant"
		}
		if roles[i] != want {
			return fmt.Errorf("message %d: role %s, want %s (after an optional first system message, roles alternate user/assistant)", i, msgs[i].Role, want)
		}
	}
	if roles[len(msgs)-1] != "user" {
		return errors.New("last message must be from the user")
	}
	if first == 1 {
		b.ends = append(b.ends, 0) // the system message renders with the first user message
	}
	b.special("<s>")
	for i := first; i < len(msgs); i++ {
		content := msgs[i].Content
		if roles[i] == "assistant" {
			b.content(content)
			b.special("</s>")
			b.turn()
			continue
		}
		if i == first && system != "" {
			content = system + "\n\n" + content
		}
		b.special("[INST] ")
		b.content(content)
		b.special(" [/INST]")
		b.turn()
	}
	return nil
}

// segments builds a prompt, joining adjacent markup into one segment within
// a message, never across messages: a tokenizer parses each segment's
// control tokens in one call, and llama.cpp's parse is quadratic in the
// control tokens of one call, so a segment must not grow with the number of
// (empty) messages.
type segments struct {
	segs []Segment
	open bool  // the last segment is markup that may still grow
	ends []int // the segment count after each message (RenderSpans)
}

func (b *segments) special(text string) {
	if n := len(b.segs); n > 0 && b.open {
		b.segs[n-1].Text += text
		return
	}
	b.segs = append(b.segs, Segment{Text: text, Special: true})
	b.open = true
}

func (b *segments) content(text string) {
	if text != "" {
		b.segs = append(b.segs, Segment{Text: text})
		b.open = false
	}
}

// turn ends a message: the next markup starts a new segment.
func (b *segments) turn() {
	b.open = false
	b.ends = append(b.ends, len(b.segs))
}
