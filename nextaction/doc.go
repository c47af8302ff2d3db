// Package nextaction is the next-action domain of nextact: the simulated
// shopper of Lu et al. 2025 ("Beyond Believability"). It knows pages,
// actions and prompts, and nothing about engines.
//
// A page is simplified HTML built as in the paper: every element a shopper
// can click or type into carries a hierarchical name attribute made from
// the names of its ancestors, and the ancestors carry names too, only
// because the hierarchy is built from them:
//
//	<div name="columbia_shirt">                       container
//	  <a name="columbia_shirt.view_product">View</a>  clickable
//	</div>
//	<input name="search_input">                       input
//
// ParsePage reads a page with a real HTML parser into its named elements,
// each a Clickable (a, button, select, option, summary, label, button-like
// inputs, elements with a control role or onclick), an Input (text-like
// inputs, textarea) or a Container (anything else: div, span, li, img ...),
// and drops names that cannot be emitted verbatim inside a JSON string.
// Containers are never the target of an action. A page with no clickable
// or input is valid: the only legal action on it is terminate.
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
// ReducePage shrinks a page to a byte budget by one policy (every named
// element and its label kept, unnamed text kept from the top down, then a
// cap), keeping exactly the elements ParsePage finds. FindPromptedAnswer
// finds a prompted-format answer in the free text of an unconstrained
// model.
//
// RandomPage generates seeded random pages for tests and benchmarks.
// api.go holds the wire types of POST /v1/actions/next; the client
// subpackage is a typed Go client for it.
//
// The package is pure Go and imports no engine code; of nextact it imports
// only models, for models.Message.
package nextaction
