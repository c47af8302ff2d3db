package server

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// The HTTP transport below Fiber's router: fasthttp's hooks, so that what
// fasthttp answers by itself (a malformed request, an unknown method, an
// oversized body announced with Expect: 100-continue) is answered in the
// API's error shape, never echoes the request back, and never waits long.

// DefaultHeaderTimeout bounds reading one request's header block: from the
// connection's start for its first request, from the first byte for later
// ones (fasthttp's ReadTimeout); the body then has until the request
// timeout.
const DefaultHeaderTimeout = 10 * time.Second

// knownMethods are the methods Fiber routes; any other gets a 501 here
// (Fiber would answer it in plain text).
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodDelete: true, http.MethodConnect: true, http.MethodOptions: true,
	http.MethodTrace: true, http.MethodPatch: true,
}

// configureTransport installs the hooks on Fiber's fasthttp server. Call it
// once, after fiber.New.
func (s *Server) configureTransport() {
	srv := s.app.Server()
	srv.ReadTimeout = s.cfg.HeaderTimeout // see DefaultHeaderTimeout
	srv.HeaderReceived = s.headerReceived
	srv.ErrorHandler = s.transportError
	route := srv.Handler
	srv.Handler = func(fctx *fasthttp.RequestCtx) {
		if !knownMethods[string(fctx.Method())] {
			s.writeTransportError(fctx, &requestError{status: http.StatusNotImplemented, code: "method_not_supported",
				msg: "The HTTP method is not supported: use GET, POST or DELETE as each path documents."})
			return
		}
		route(fctx)
	}
}

// headerReceived runs once a request's headers are read, before its body.
// It gives the body the request timeout to arrive (the header block alone
// had HeaderTimeout), and turns an Expect: 100-continue whose announced
// body is over the limit into an immediate 413: without the expectation,
// fasthttp refuses the length before reading a byte of the body, instead of
// inviting the client to send it.
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if h.ContentLength() > s.cfg.BodyLimit && bytes.EqualFold(bytes.TrimSpace(h.Peek(fiber.HeaderExpect)), []byte("100-continue")) {
		h.Del(fiber.HeaderExpect)
	}
	return fasthttp.RequestConfig{ReadTimeout: s.cfg.RequestTimeout}
}

// transportError is fasthttp's ErrorHandler: a request it could not read.
// A connection that closed before sending anything (a client's spare
// connection, or one closed at shutdown) is not an error worth a log line;
// a malformed request gets a fixed message, never the request's bytes.
func (s *Server) transportError(fctx *fasthttp.RequestCtx, err error) {
	var (
		small   *fasthttp.ErrSmallBuffer
		nothing *fasthttp.ErrNothingRead
		netErr  net.Error
	)
	var reqErr error
	switch {
	case errors.As(err, &small):
		reqErr = fiber.ErrRequestHeaderFieldsTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		reqErr = fiber.ErrRequestEntityTooLarge
	case errors.As(err, &netErr) && netErr.Timeout():
		reqErr = &requestError{status: http.StatusRequestTimeout, code: "request_timeout",
			msg: "The request was not received in time: its headers must arrive within the header timeout, its body within the request timeout."}
	case errors.As(err, &nothing), errors.As(err, &netErr), errors.Is(err, net.ErrClosed):
		s.log.Debug("connection closed before a request", zap.Error(err))
		return
	default:
		reqErr = &requestError{code: "malformed_request",
			msg: "The request is not valid HTTP/1.1: a malformed request line or header (every header line needs a name, a colon and a value)."}
		s.log.Debug("malformed request", zap.String("cause", firstLine(err.Error())))
	}
	s.writeTransportError(fctx, reqErr)
}

// writeTransportError renders err in the API's error shape outside Fiber's
// router.
func (s *Server) writeTransportError(fctx *fasthttp.RequestCtx, err error) {
	c := s.app.AcquireCtx(fctx)
	defer s.app.ReleaseCtx(c)
	if werr := s.handleError(c, err); werr != nil {
		s.log.Debug("write error response", zap.Error(werr))
	}
}

// firstLine is the start of a fasthttp error message, without the request
// bytes it quotes.
func firstLine(msg string) string {
	if i := strings.Index(msg, ". Buffer size="); i >= 0 {
		msg = msg[:i]
	}
	return msg
}
