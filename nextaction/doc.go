// Package nextaction is the next-action domain of nextact: the simulated
// shopper of Lu et al. 2025 ("Beyond Believability"). It knows pages,
// actions and prompts, and nothing about engines.
//
// A page is simplified HTML in which every element a shopper can click or
// type into carries a hierarchical name attribute
// (columbia_shirt.view_product, search_input). ParsePage reads it with a
// real HTML parser into its named elements, telling clickables from inputs,
// and drops names that cannot be emitted verbatim inside a JSON string. A
// page with no named elements is valid: the only legal action on it is
// terminate.
//
// An Action is one of
//
//	{"type":"click","name":"<clickable name>"}
//	{"type":"type_and_submit","name":"<input name>","text":"<typed text>"}
//	{"type":"terminate"}
//
// Action.Validate checks one against a page; Action.JSON renders it
// canonically (keys in the order type, name, text).
//
// BuildPrompt turns the current page, the history of earlier steps and an
// optional persona into chat messages in one of the paper's two formats:
// FormatPrompted (one JSON object with the rationale, then the action) and
// FormatFinetuned (a rationale turn, the fixed EndOfRationale user turn,
// then the action turn). Its validation errors are *FieldError values that
// name the offending request field.
//
// RandomPage generates seeded random pages for tests and benchmarks.
// api.go holds the wire types of POST /v1/actions/next; the client
// subpackage is a typed Go client for it.
//
// The package is pure Go and imports no engine code; of nextact it imports
// only models, for models.Message.
package nextaction
