package server

import "github.com/gofiber/fiber/v2"

// acquire resolves the model a request names and leases it until release is called.
//
// Today every model is loaded for the server's life: this resolves id with
// s.model (a 400 when empty, a 404 when unknown) and release does nothing.
// The model registry replaces this body (load on first use, keep_alive,
// LRU unloading); a handler calls release exactly once, when it no longer
// uses the model: at its return, or, for a stream, when the stream ends
// (startGeneration takes release over). The keep_alive an Ollama request
// asked for is requestKeepAlive(c).
func (s *Server) acquire(c *fiber.Ctx, id string) (*Model, func(), error) {
	m, err := s.model(id)
	if err != nil {
		return nil, nil, err
	}
	return m, func() {}, nil
}
