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
// The package owns the pipeline of one next action. A Planner, built once
// per model (its chat format, tokenizer, Grammars and limits), turns a
// NextActionRequest into a Plan: the prompt's tokens, an ActionConstraint
// (the scheduler's constraint for the page in either format), the token
// budget and the sampling fields. Once the scheduler has run the plan,
// Plan.Answer turns it into the NextActionResponse, through one Result
// type that both formats share. The HTTP API, sessions, and through the
// same BuildPrompt and answer parsers the bench and the eval harness, all
// go this way. Grammars is a model's constrained decoding (its vocabulary
// index, grammar cache and schema limits); structured outputs use it
// directly (Grammars.JSON), without the action machinery.
//
// api.go holds the wire types of POST /v1/actions/next; the client
// subpackage is a typed Go client for it, and nextactiontest generates
// seeded random pages for tests and benchmarks.
//
// The package is pure Go and imports no engine or scheduler code; of
// nextact it imports only models (messages, chat formats, the tokenizer
// interface) and internal/jsonstr. Its constraints satisfy the
// scheduler's interfaces structurally; the conformance checks are in the
// server, which relies on them.
package nextaction
