package server

import (
	"testing"
	"time"

	"github.com/nextact/nextact/batching"
)

// The cost of rendering one streamed token: an SSE chunk for /v1 (fixed
// parts built once) against an Ollama NDJSON line (one json.Marshal of
// api.ChatResponse with its timestamp). A decode step takes milliseconds;
// this is the server's share per token.
//
//	go test -run '^$' -bench StreamFrame -benchmem ./server
func BenchmarkStreamFrame(b *testing.B) {
	text := " the shopper clicks"
	b.Run("sse", func(b *testing.B) {
		f := &sseFrames{events: newEventFormat(responseMeta{id: "chatcmpl-x", created: 1, model: "nextact-tiny", kind: chatEndpoint}, false)}
		b.ReportAllocs()
		for b.Loop() {
			_ = f.text(text, nil)
		}
	})
	for name, kind := range map[string]ollamaKind{"ndjson-chat": ollamaChatKind, "ndjson-generate": ollamaGenerateKind} {
		b.Run(name, func(b *testing.B) {
			now := time.Now()
			f := &ollamaFrames{reply: &ollamaReply{kind: kind, model: "nextact-tiny", now: time.Now, start: now, loaded: now, submitted: now}}
			b.ReportAllocs()
			for b.Loop() {
				_ = f.text(text, nil)
			}
			_ = f.end(batching.Chunk{Done: true})
		})
	}
}
