package server

import (
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
)

// fasthttp never reports a client that went away, and a non-streaming
// request writes nothing until its answer is complete. So while one waits,
// its connection is probed every clientPoll without consuming a byte
// (recv with MSG_PEEK|MSG_DONTWAIT: 0 bytes is the peer's FIN, EAGAIN an
// open connection, data a pipelined request); a closed one cancels the
// generation, freeing its slot or queue place at the next step. A client
// that half-closes its sending side while it waits for the answer looks
// gone too (Go's net/http treats it alike); HTTP clients do not do that.

// clientPoll is how often a waiting request's connection is probed.
const clientPoll = 250 * time.Millisecond

// watchClient probes c's connection until stop is called, calling cancel
// when the client has gone. stop returns whether it had. Connections that
// are not sockets (app.Test's) are not watched.
func (s *Server) watchClient(c *fiber.Ctx, cancel func()) (stop func() (gone bool)) {
	probe := peerClosedProbe(c.Context().Conn())
	if probe == nil {
		return func() bool { return false }
	}
	done := make(chan struct{})
	var (
		wg   sync.WaitGroup
		gone bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.clientPoll)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if probe() {
					gone = true
					cancel()
					return
				}
			}
		}
	}()
	return func() bool {
		close(done)
		wg.Wait()
		return gone
	}
}
