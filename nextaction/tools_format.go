package nextaction

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nextact/nextact/models"
)

// FormatTools offers the action space as tools in the chat format's own
// tool-calling convention (models.ChatFormat.RenderTools): the model calls
// click, type_and_submit or terminate, each with a rationale argument
// first. The tool definitions in the prompt are the same on every page (so
// a session's prompts keep their prefix); the decoder restricts the call
// to the current page: names are enums of its clickables and inputs, and
// a tool without a target on the page is not offered to the decoder.
// Per history step: the page (user) and the call (assistant); no tool
// result (the next page is what the action led to), but in Mistral's
// format, whose template wants an assistant turn with content between a
// call and the next user turn, the call is followed by its result
// (mistralResult) and an assistant turn (mistralAck).
//
// The history is rendered whole, under the strict history policy whatever
// the request asks (usage.history.policy says "strict"): the window
// policy's per-message accounting does not hold where the tool definitions
// sit inside another message. A prompt over the context is a 400.
const FormatTools Format = "tools"

// toolArgRationale is the argument every action tool takes first (the
// tools are named after the action types).
const toolArgRationale = "rationale"

// toolsSystem is the system prompt of FormatTools.
const toolsSystem = taskIntro + ` Given the pages the shopper has seen and what they did on each, predict what the shopper does next on the current page by calling exactly one of the tools.

Each page is simplified HTML: scripts, styles and purely visual elements are removed, and elements carry hierarchical name attributes built from the names of their containers, such as name="columbia_shirt.view_product" inside name="columbia_shirt", or name="search_input".

` + targetRule + `

A purchase is a click on the buy-now element. terminate ends the session. Give the rationale first, in the first person as the shopper.`

// actionTools are the tool definitions the prompt shows: the same on every
// page.
var actionTools = []models.Tool{
	{Name: TypeClick, Description: "Click a clickable element of the current page.", Parameters: []byte(
		`{"type":"object","properties":{"rationale":{"type":"string","description":"why the shopper does this, in the first person"},"name":{"type":"string","description":"the name attribute of a clickable element of the current page"}},"required":["rationale","name"]}`)},
	{Name: TypeTypeAndSubmit, Description: "Type text into an input element of the current page and submit it.", Parameters: []byte(
		`{"type":"object","properties":{"rationale":{"type":"string","description":"why the shopper does this, in the first person"},"name":{"type":"string","description":"the name attribute of an input element of the current page"},"text":{"type":"string","description":"what the shopper types"}},"required":["rationale","name","text"]}`)},
	{Name: TypeTerminate, Description: "End the shopping session.", Parameters: []byte(
		`{"type":"object","properties":{"rationale":{"type":"string","description":"why the shopper does this, in the first person"}},"required":["rationale"]}`)},
}

// toolArgs are a call's arguments in FormatTools.
type toolArgs struct {
	Rationale string `json:"rationale"`
	Name      string `json:"name,omitempty"`
	Text      string `json:"text,omitempty"`
}

// actionCall is a history step's answer as a tool call.
func actionCall(i int, rationale string, a Action) models.ToolCall {
	args, _ := json.Marshal(toolArgs{Rationale: rationale, Name: a.Name, Text: a.Text}) // strings only: cannot fail
	return models.ToolCall{ID: fmt.Sprintf("step%d", i), Name: a.Type, Arguments: string(args)}
}

// pageToolSchema is the decoder's schema of one answer on page p: a call
// of a tool that has a target on the page, its name an enum of the page's
// targets, the rationale and the typed text bounded so that their bytes
// stay within l (a string's length counts UTF-16 units, at most 3 bytes
// of UTF-8 each).
func pageToolSchema(f models.ChatFormat, p *Page, l Limits) ([]byte, error) {
	clickables, inputs := p.Clickables(), p.Inputs()
	str := func(maxLen int) string {
		return fmt.Sprintf(`{"type":"string","minLength":%d,"maxLength":%d}`, min(1, maxLen), maxLen)
	}
	enum := func(names []string) string {
		b, _ := json.Marshal(names) // strings: cannot fail
		return `{"enum":` + string(b) + `}`
	}
	// object lists its properties in the order given (the decoder writes
	// them in schema order: the rationale first), all required.
	object := func(props ...string) []byte {
		var b, req []byte
		for i := 0; i < len(props); i += 2 {
			if i > 0 {
				b, req = append(b, ','), append(req, ',')
			}
			b = append(b, `"`+props[i]+`":`+props[i+1]...)
			req = append(req, `"`+props[i]+`"`...)
		}
		return []byte(`{"type":"object","properties":{` + string(b) + `},"required":[` + string(req) + `],"additionalProperties":false}`)
	}
	rationale := str(l.MaxRationaleBytes / 3)
	var tools []models.Tool
	if len(clickables) > 0 {
		tools = append(tools, models.Tool{Name: TypeClick, Parameters: object(toolArgRationale, rationale, "name", enum(clickables))})
	}
	if text := l.MaxTextBytes / 3; len(inputs) > 0 && text > 0 {
		tools = append(tools, models.Tool{Name: TypeTypeAndSubmit, Parameters: object(toolArgRationale, rationale, "name", enum(inputs), "text", str(text))})
	}
	tools = append(tools, models.Tool{Name: TypeTerminate, Parameters: object(toolArgRationale, rationale)})
	return f.CallSchema(tools, 1)
}

// parseToolAnswer reads a FormatTools answer: the call the model wrote
// after the format's CallPrefix.
func parseToolAnswer(f models.ChatFormat, out []byte) (string, Action, error) {
	calls, ok := f.ParseForced(string(out), func(name string) bool {
		return name == TypeClick || name == TypeTypeAndSubmit || name == TypeTerminate
	})
	if !ok || len(calls) != 1 {
		return "", Action{}, fmt.Errorf("parse answer: not one call of an action tool: %q", out)
	}
	var args toolArgs
	if err := json.Unmarshal([]byte(calls[0].Arguments), &args); err != nil {
		return "", Action{}, fmt.Errorf("parse answer: %w", err)
	}
	return args.Rationale, Action{Type: calls[0].Name, Name: args.Name, Text: args.Text}, nil
}

// planTools renders and tokenizes a FormatTools prompt whole (strict
// history policy), with the format's call prefix after the generation
// prompt.
func (p *Planner) planTools(ctx context.Context, msgs []models.Message, pol HistoryPolicy, steps int) (fitted, error) {
	if p.cfg.ChatFormat == models.FormatMistral {
		msgs = mistralSteps(msgs)
	}
	memo := &tokenMemo{tok: p.cfg.Tokenizer, m: map[models.Segment][]int32{}}
	tokens := func(msgs []models.Message) ([]int32, error) {
		segs, err := p.cfg.ChatFormat.RenderTools(msgs, actionTools)
		if err != nil {
			return nil, fmt.Errorf("render tools prompt: %w", err)
		}
		if prefix := p.cfg.ChatFormat.CallPrefix(); prefix != "" {
			segs = append(segs, models.Segment{Text: prefix, Special: true})
		}
		return memo.join(ctx, segs)
	}
	prompt, err := tokens(msgs)
	if err != nil {
		return fitted{}, err
	}
	if pol.MaxTokens > 0 && steps > 0 {
		// The history's tokens: the prompt's less the prompt without it.
		bare, err := tokens([]models.Message{msgs[0], msgs[len(msgs)-1]})
		if err != nil {
			return fitted{}, err
		}
		if hist := len(prompt) - len(bare); hist > pol.MaxTokens {
			return fitted{}, &RequestError{Field: "history", Code: "context_length_exceeded", Msg: fmt.Sprintf(
				"The history takes %d tokens, over its max_tokens of %d under the strict history policy. Shorten the history.", hist, pol.MaxTokens)}
		}
	}
	return fitted{prompt: prompt, usage: HistoryUsage{Policy: HistoryStrict, Steps: steps}}, nil
}

// The turns that close a history step's call in Mistral's format.
const (
	mistralResult = "done"
	mistralAck    = "Done."
)

// mistralSteps follows every call of msgs with its result and an
// assistant turn, as Mistral's template requires before the next user
// turn.
func mistralSteps(msgs []models.Message) []models.Message {
	out := make([]models.Message, 0, len(msgs)*2)
	for _, m := range msgs {
		out = append(out, m)
		if len(m.ToolCalls) == 1 {
			out = append(out,
				models.Message{Role: "tool", ToolCallID: m.ToolCalls[0].ID, Content: mistralResult},
				models.Message{Role: roleAssistant, Content: mistralAck})
		}
	}
	return out
}

// toolsConstraint is the decoder of one FormatTools answer on page.
func (p *Planner) toolsConstraint(page *Page) (*ActionConstraint, error) {
	schema, err := pageToolSchema(p.cfg.ChatFormat, page, p.cfg.Limits)
	if err != nil {
		return nil, fmt.Errorf("tools schema: %w", err)
	}
	bc, err := p.cfg.Grammars.JSON(schema)
	if err != nil {
		return nil, &FieldError{Field: "page", Msg: "the page's action tools cannot be compiled: " + err.Error()}
	}
	f := p.cfg.ChatFormat
	return &ActionConstraint{actionDecoder: bc, page: page, maxText: p.cfg.Limits.MaxTextBytes,
		result: func() (string, Action, error) { return parseToolAnswer(f, bc.Output()) }}, nil
}
