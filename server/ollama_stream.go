package server

import (
	"encoding/json"

	"go.uber.org/zap"

	"github.com/nextact/nextact/batching"
)

// ollamaFrames are the Ollama API's NDJSON stream: one JSON object per
// line, done:false with text, a last one with done:true and the metrics,
// or {"error":"..."} when the generation fails after the stream started.
// There are no comments in NDJSON: the keep-alive, while the request waits
// for its first text, is a reply with empty text.
type ollamaFrames struct {
	reply        *ollamaReply
	errorMessage func(error) string
	buf          []byte
}

var _ frames = (*ollamaFrames)(nil)

func (f *ollamaFrames) start() []byte { return nil }
func (f *ollamaFrames) text(s string, toks []batching.TokenLogprob) []byte {
	return f.line(f.reply.text(s, toks))
}
func (f *ollamaFrames) keepAlive() []byte { return f.line(f.reply.text("", nil)) }
func (f *ollamaFrames) end(c batching.Chunk) []byte {
	c.Tokens = nil // sent with the chunk's text
	return f.line(f.reply.final("", c))
}
func (f *ollamaFrames) fail(err error) []byte {
	return f.line(ollamaErrorBody{Error: f.errorMessage(err)})
}

// line renders v as one NDJSON line.
func (f *ollamaFrames) line(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // the reply types always marshal
		b = []byte(`{"error":"internal error"}`)
	}
	f.buf = append(append(f.buf[:0], b...), '\n')
	return f.buf
}

// ollamaErrorMessage is what the client is told of err, logging errors
// that are the server's fault.
func (s *Server) ollamaErrorMessage(err error) string {
	f, internal := s.httpError(err)
	if internal {
		s.log.Error("stream failed", zap.Error(err))
	}
	return f.body.Error.Message
}
