// Package server is nextact's HTTP front: an OpenAI-compatible API
// (/v1/chat/completions, /v1/completions, /v1/models) and a health check,
// served by Fiber.
//
// The server renders and tokenizes prompts, validates requests against each
// model's context length and hands them to a Generator (in production the
// batching scheduler). It imports no engine code and no cgo.
//
// Invariants:
//   - Every error response has OpenAI's shape {"error":{message,type,param,
//     code}}; errors become HTTP statuses in exactly one place (httpError).
//   - Every generation runs under a server-side deadline
//     (Config.RequestTimeout). fasthttp never reports a client that went
//     away, so a stream cancels its generation on the first failed write;
//     before the first token arrives it writes SSE comments to find out.
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
package server
