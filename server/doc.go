// Package server is nextact's HTTP front: an OpenAI-compatible API
// (/v1/chat/completions, /v1/completions, /v1/models), the subset of
// Ollama's API that serves local models (/api/chat, /api/generate, ...:
// ollama*.go), and a health check, served by Fiber.
//
// The server renders and tokenizes prompts, validates requests against each
// model's context length and hands them to a Generator (in production the
// batching scheduler). It imports no engine code and no cgo.
//
// Invariants:
//   - Every error response has OpenAI's shape {"error":{message,type,param,
//     code}} (Ollama's {"error":"..."} under /api); errors become HTTP
//     statuses in exactly one place (httpError).
//   - The Ollama API's handlers get their model through acquire and
//     release it when done; a stream releases it when it ends.
//   - Every request runs under a server-side deadline
//     (Config.RequestTimeout) that starts with its handler, so preparing it
//     (rendering, tokenizing, compiling a grammar) counts too; preparation
//     is linear in the request, and every input has a bound (Config,
//     nextaction.SchemaLimits). fasthttp never reports a client that went
//     away, so a stream cancels its generation on the first failed write
//     (before the first token it writes SSE comments to find out), and a
//     non-streaming request probes its connection while it waits
//     (clientgone.go).
//   - Bodies are bounded as received and once inflated (encoding.go);
//     what fasthttp answers by itself (malformed requests, unknown
//     methods, oversized Expect: 100-continue) is answered in the error
//     shape too (transport.go).
//   - A *fiber.Ctx is used only inside its handler: a stream writer gets
//     copies of everything it needs.
//   - Shutdown stops accepting connections and lets in-flight requests,
//     open streams included, finish; when its context ends first, the
//     remaining generations are cancelled. Drain, before it, turns
//     /health/ready and new generation requests to 503 while admitted ones
//     finish.
//   - Operations: API keys (auth.go, compared in constant time), per-client
//     rate limits (ratelimit.go), readiness and drain (ready.go), and
//     /metrics (metrics.go), which reads cached values only and never waits
//     on the engine. Every POST under /v1 passes the gate: draining, then
//     the rate limit.
//   - Shopper sessions (sessions.go) are kept in memory and written
//     through to a SessionStore before each answer (sessionpersist.go), or
//     kept in a SharedSessionStore that several replicas read at every
//     access, a step holding the session's renewed lease
//     (sessionshared.go). A change the store refuses is a 503 and leaves
//     the session as it was.
package server
