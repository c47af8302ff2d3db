package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/nextact/nextact/batching/admission"
)

// Readiness states: /health/ready answers 200 only when ready.
const (
	stateStarting int32 = iota // until MarkReady: the model is not serving yet
	stateReady
	stateDraining // after Drain: no new generations
)

// errDraining is a generation refused because the server is draining.
var errDraining = errors.New("server is draining")

// drainRetryAfter is the Retry-After of requests refused while draining:
// another replica is the better target, soon.
const drainRetryAfter = time.Second

// MarkReady makes /health/ready answer 200; call it once the model serves.
// It does nothing once draining.
func (s *Server) MarkReady() {
	s.state.CompareAndSwap(stateStarting, stateReady)
}

func (s *Server) readiness() int32 { return s.state.Load() }

// Drain prepares a shutdown: /health/ready answers 503 and new generation
// requests get 503 with Retry-After, while requests already admitted,
// streams included, go on. It waits until none is left or ctx ends, and
// leaves the listener open; Shutdown closes it. Idempotent.
func (s *Server) Drain(ctx context.Context) error {
	s.startDraining()
	select {
	case <-s.inflight.idle():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain: %w", ctx.Err())
	}
}

func (s *Server) startDraining() {
	s.drainMu.Lock()
	s.state.Store(stateDraining)
	s.drainMu.Unlock()
}

// ready answers GET /health/ready: the state, and the devices when the
// engine reported them.
func (s *Server) ready(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	st := s.readiness()
	if st != stateReady {
		c.Status(fiber.StatusServiceUnavailable)
	}
	return c.Send(s.readyBodies[st])
}

// renderReadiness renders /health/ready's body for each state once.
func renderReadiness(devs []Device) ([3][]byte, error) {
	var out [3][]byte
	for st, name := range [3]string{stateStarting: "starting", stateReady: "ready", stateDraining: "draining"} {
		b, err := json.Marshal(struct {
			Status  string   `json:"status"`
			Devices []Device `json:"devices,omitempty"`
		}{name, devs})
		if err != nil {
			return out, fmt.Errorf("server: readiness: %w", err)
		}
		out[st] = b
	}
	return out, nil
}

// gate admits generation requests (every POST under /v1): refused while
// draining, then the client's rate limit; an admitted request counts as in
// flight until its handler returns (a stream counts itself after that).
func (s *Server) gate(c *fiber.Ctx) error {
	if c.Method() != fiber.MethodPost {
		return c.Next()
	}
	cl := clientOf(c)
	s.drainMu.Lock()
	if s.readiness() == stateDraining {
		s.drainMu.Unlock()
		s.metrics.Decided(admission.Decision{Outcome: admission.OutcomeRejected, Reason: reasonDraining, Priority: cl.priority})
		return errDraining
	}
	s.inflight.add()
	s.drainMu.Unlock()
	defer s.inflight.done()
	if ok, retry := s.limiter.allow(cl.name, cl.rate, cl.burst); !ok {
		s.metrics.Decided(admission.Decision{Outcome: admission.OutcomeRejected, Reason: reasonRateLimited, Priority: cl.priority})
		return &rateLimitError{retryAfter: retry}
	}
	return c.Next()
}

// Reasons of the server's own admission decisions.
const (
	reasonDraining    = "draining"
	reasonRateLimited = "rate_limited"
)

// lingerGrace is how long Shutdown lets connections close by themselves
// once no generation is in flight, before closing them.
const lingerGrace = time.Second

// connSet tracks open connections. fasthttp's shutdown waits for every
// connection to go idle, but counts one that was accepted and never sent a
// request (a client's spare pooled connection) as active until its read
// deadline, the request timeout: minutes. Once drained, Shutdown closes
// what is left.
type connSet struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

// track is fasthttp's ConnState hook.
func (cs *connSet) track(c net.Conn, state fasthttp.ConnState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	switch state {
	case fasthttp.StateNew:
		if cs.m == nil {
			cs.m = map[net.Conn]struct{}{}
		}
		cs.m[c] = struct{}{}
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		delete(cs.m, c)
	}
}

func (cs *connSet) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for c := range cs.m {
		_ = c.Close()
	}
}

// closeLingering closes the remaining connections lingerGrace after no
// generation is in flight any more, unless stop or ctx ends first.
func (s *Server) closeLingering(ctx context.Context, stop <-chan struct{}) {
	select {
	case <-s.inflight.idle():
	case <-stop:
		return
	case <-ctx.Done():
		return
	}
	t := time.NewTimer(lingerGrace)
	defer t.Stop()
	select {
	case <-t.C:
		s.conns.closeAll()
	case <-stop:
	case <-ctx.Done():
	}
}
