package nextaction

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nextact/nextact/internal/jsonstr"
	"github.com/nextact/nextact/models"
)

// Format is a prompt format of the paper.
type Format string

// The prompt formats.
const (
	// FormatPrompted is for off-the-shelf models: one assistant turn per
	// step holding one JSON object, the rationale then the action.
	FormatPrompted Format = "prompted"
	// FormatFinetuned is the paper's fine-tuning format: per step a
	// rationale turn, the fixed EndOfRationale user turn, and an action
	// turn.
	FormatFinetuned Format = "finetuned"
)

const validPromptFormats = "prompted, finetuned, tools"

// ParseFormat returns the format named s (case and surrounding space are
// ignored). An empty or unknown name is an error listing the valid ones;
// the caller substitutes the model's default for an empty name first.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatPrompted, FormatFinetuned, FormatTools:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %s (valid: %s)", strconv.Quote(s), validPromptFormats)
}

// Fixed texts of the prompts.
const (
	// EndOfRationale is the content of the user turn that, in the
	// fine-tuned format, separates the rationale turn from the action turn.
	EndOfRationale = "<|end_of_rationale|>"
	// PageOmitted stands in for a history step without a page.
	PageOmitted = "(page omitted)"
	// RationaleOmitted stands in for a history step without a rationale.
	RationaleOmitted = "(rationale omitted)"
)

// Chat roles.
const (
	roleSystem    = "system"
	roleUser      = "user"
	roleAssistant = "assistant"
)

// Step is one earlier step of a session: the page the shopper saw, what
// they did and why. Page and Rationale may be empty.
type Step struct {
	Page      string `json:"page,omitempty"`
	Action    Action `json:"action"`
	Rationale string `json:"rationale,omitempty"`
}

// PromptInput is what a prompt is built from: the current page, the earlier steps
// (oldest first) and an optional free-text persona.
type PromptInput struct {
	Page    string
	History []Step
	Persona string
}

// taskIntro opens both system prompts.
const taskIntro = "You are simulating a real human shopper browsing an online store."

// promptedSystem is the system prompt of FormatPrompted; the persona
// section follows it when there is a persona.
const promptedSystem = taskIntro + ` Given the pages the shopper has seen and what they did on each, predict what the shopper does next on the current page.

Each page is simplified HTML: scripts, styles and purely visual elements are removed, and elements carry hierarchical name attributes built from the names of their containers, such as name="columbia_shirt.view_product" inside name="columbia_shirt", or name="search_input".

` + targetRule + `

The action is one of:
{"type":"click","name":"<name of a clickable element of the current page>"}
{"type":"type_and_submit","name":"<name of an input element of the current page>","text":"<what the shopper types>"}
{"type":"terminate"}
A purchase is a click on the buy-now element. terminate ends the session.

Answer with exactly one JSON object and nothing else: first a short rationale, in the first person as the shopper, then the action:
{"rationale":"<why the shopper does this>","action":<the action>}`

// finetunedSystem is the system prompt of FormatFinetuned; the persona
// section follows it when there is a persona.
const finetunedSystem = taskIntro + ` For each page, given as simplified HTML in which elements carry hierarchical name attributes built from the names of their containers, first explain in the first person why the shopper acts. ` + targetRule + ` After the ` + EndOfRationale + ` message, answer with the action as JSON: {"type":"click","name":"<clickable name>"}, {"type":"type_and_submit","name":"<input name>","text":"<typed text>"} or {"type":"terminate"}.`

// targetRule tells the model what it may act on, in the terms of ParsePage.
const targetRule = `Only named interactive elements are targets: a click names a clickable element (a link, button, select, option, summary, label, a button, submit, reset, image, checkbox or radio input, or an element with a control role or an onclick handler); type_and_submit names an input element (a text input or a textarea). Named containers (div, span, section, li, ul, form, img and the like) only group other elements and are never targets.`

// personaHeading introduces the persona in the system prompt.
const personaHeading = "\n\nThe shopper's persona:\n"

// BuildPrompt returns the chat messages that ask for the next action in
// format f. The templates:
//
// FormatPrompted:
//
//	system:    promptedSystem [+ personaHeading + persona]
//	for each step of in.History:
//	  user:      the step's page (PageOmitted if empty)
//	  assistant: {"rationale":"<rationale>","action":<Action.JSON>}
//	user:      in.Page
//
// FormatFinetuned:
//
//	system:    finetunedSystem [+ personaHeading + persona]
//	for each step of in.History:
//	  user:      the step's page (PageOmitted if empty)
//	  assistant: the rationale
//	  user:      EndOfRationale
//	  assistant: Action.JSON
//	user:      in.Page
//
// The model then writes the rationale turn; the caller appends it and
// FinetunedActionTurn and asks for the action turn.
//
// An empty step rationale is rendered as RationaleOmitted. Roles alternate
// user/assistant after the system message and end with the user, as every
// chat format of package models requires. Errors are *FieldError naming the
// request field: format, page, or history[i].action.type/name/text (step
// actions are checked for shape, not against their pages).
func BuildPrompt(f Format, in PromptInput) ([]models.Message, error) {
	if f != FormatPrompted && f != FormatFinetuned && f != FormatTools {
		return nil, &FieldError{"format", fmt.Sprintf("unknown format %s (valid: %s)", strconv.Quote(string(f)), validPromptFormats)}
	}
	if in.Page == "" {
		return nil, &FieldError{"page", "required"}
	}
	for i, s := range in.History {
		if err := s.Action.Validate(nil, 0); err != nil {
			return nil, prefixField(fmt.Sprintf("history[%d].action", i), err)
		}
	}
	msgs := make([]models.Message, 0, 2+stepMessages(f)*len(in.History))
	msgs = append(msgs, models.Message{Role: roleSystem, Content: systemPrompt(f, in.Persona)})
	for i, s := range in.History {
		msgs = appendStep(msgs, f, i, s)
	}
	return append(msgs, models.Message{Role: roleUser, Content: in.Page}), nil
}

// stepMessages is how many messages one history step renders to in f.
func stepMessages(f Format) int {
	if f == FormatFinetuned {
		return 4
	}
	return 2
}

// systemPrompt is the system message of f, with the persona when there is
// one.
func systemPrompt(f Format, persona string) string {
	system := promptedSystem
	switch f {
	case FormatFinetuned:
		system = finetunedSystem
	case FormatTools:
		system = toolsSystem
	}
	if p := strings.TrimSpace(persona); p != "" {
		system += personaHeading + p
	}
	return system
}

// appendStep appends the stepMessages(f) messages of history step i: its
// page (PageOmitted when empty) and its answer.
func appendStep(msgs []models.Message, f Format, i int, s Step) []models.Message {
	page := s.Page
	if page == "" {
		page = PageOmitted
	}
	rationale := s.Rationale
	if rationale == "" {
		rationale = RationaleOmitted
	}
	msgs = append(msgs, models.Message{Role: roleUser, Content: page})
	switch f {
	case FormatPrompted:
		return append(msgs, models.Message{Role: roleAssistant, Content: PromptedOutput(rationale, s.Action)})
	case FormatTools:
		return append(msgs, models.Message{Role: roleAssistant, ToolCalls: []models.ToolCall{actionCall(i, rationale, s.Action)}})
	}
	return append(msgs,
		models.Message{Role: roleAssistant, Content: rationale},
		FinetunedActionTurn(),
		models.Message{Role: roleAssistant, Content: s.Action.JSON()},
	)
}

// FinetunedActionTurn returns the fixed user turn that follows the rationale
// turn in the fine-tuned format.
func FinetunedActionTurn() models.Message {
	return models.Message{Role: roleUser, Content: EndOfRationale}
}

// PromptedOutput renders the answer of one step in the prompted format:
// {"rationale":"...","action":{...}}. The rationale comes first because
// the model is meant to reason before it acts: the constrained decoder
// generates the rationale, then the action.
func PromptedOutput(rationale string, a Action) string {
	b := jsonstr.Append([]byte(`{"rationale":`), rationale)
	b = append(b, `,"action":`...)
	b = a.appendJSON(b)
	return string(append(b, '}'))
}

// ParsePromptedOutput decodes an answer in the prompted format strictly:
// one object with exactly the keys rationale and action (in any order),
// no unknown fields, nothing after it. The action is not validated.
func ParsePromptedOutput(b []byte) (rationale string, a Action, err error) {
	var out struct {
		Rationale *string `json:"rationale"`
		Action    *Action `json:"action"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return "", Action{}, fmt.Errorf("parse answer: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", Action{}, errors.New("parse answer: trailing data after the object")
	}
	if out.Rationale == nil || out.Action == nil {
		return "", Action{}, errors.New("parse answer: want the keys rationale and action")
	}
	return *out.Rationale, *out.Action, nil
}
