// Package bench is nextact's load generator: simulated shoppers for load
// tests and capacity planning (`nextact bench`).
//
// A run drives Config.Sessions concurrent synthetic shopper sessions
// against one target. Each session starts on a search-results page of a
// seeded synthetic store (pages.go: search results, product pages, cart,
// checkout and order confirmation, as simplified HTML with hierarchical
// element names such as columbia_shirt.view_product), asks the target for
// the shopper's next action, and moves to the page that action leads to
// (a click on a product name opens that product, a search shows results,
// add to cart opens the cart, buy now opens checkout). A terminate action or
// the step budget ends the session; so does a step that was rejected or
// failed. When an answer cannot be used (an OpenAI-compatible server that
// wrote something other than the prompted JSON, or an action naming an
// element the page lacks), the shopper takes a seeded fallback action, so
// sessions keep moving and the workload stays comparable.
//
// Targets (Mode): nextact's sessions API (/v1/sessions: the server keeps
// the history), nextact's stateless next-action API (/v1/actions/next: the
// history is resent each step) and any OpenAI-compatible
// /v1/chat/completions (streamed; the prompt is nextaction.BuildPrompt's
// prompted format).
//
// Every step issued ends in exactly one outcome: success, rejected (HTTP
// 429 or 503) or failed (anything else, including steps cut off by the
// run's deadline). A run is bounded: it stops by itself within
// Config.Duration, and it sends requests only to the URLs it is given
// (no redirects are followed, no proxy is used).
//
// The Report (report.go) has a stable, versioned JSON schema documented in
// docs/BENCH.md; report.html (html.go) is self-contained: inline SVG and
// CSS, no scripts, no external URLs.
//
// The package is pure Go. Of nextact it imports only nextaction and its
// client; it knows nothing of engines or the server.
package bench
