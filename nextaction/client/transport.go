package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// IdleTimeout is how long NewHTTPClient keeps an idle connection: shorter
// than the keep-alive timeouts of common servers (uvicorn, as in vLLM, and
// Node close idle connections after 5 s), so the client is not the one
// that reuses a connection the server is closing.
const IdleTimeout = 3 * time.Second

// staleRetries bounds how often one request is resent after its reused
// connection turned out closed.
const staleRetries = 2

// NewHTTPClient returns an HTTP client for up to conns concurrent requests
// to a few hosts. It follows no redirect and uses no proxy, so requests go
// only to the URLs given; it closes idle connections after IdleTimeout; and
// a request sent on a reused keep-alive connection that fails before any
// byte of the answer arrives (the server closed the connection as it was
// reused: EOF, reset) is sent again on a fresh connection, up to twice. Go's
// own transport resends only idempotent requests so; next-action and
// completion requests change nothing on the server, so resending one whose
// answer never started is safe.
func NewHTTPClient(conns int) *http.Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: conns + 16,
		IdleConnTimeout:     IdleTimeout,
		ForceAttemptHTTP2:   true,
	}
	return &http.Client{
		Transport:     &StaleConnRetry{Base: tr},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// StaleConnRetry is a RoundTripper that resends a request whose reused
// connection failed before any byte of the answer arrived (see
// NewHTTPClient). Requests with a body are resent only when they have
// GetBody (http.NewRequest sets it for in-memory bodies).
type StaleConnRetry struct {
	Base http.RoundTripper
}

var _ http.RoundTripper = (*StaleConnRetry)(nil)

// RoundTrip sends req, resending it on a fresh connection as described.
func (t *StaleConnRetry) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		// The trace runs on the transport's goroutines, which may outlive
		// a cancelled RoundTrip.
		var reused, answered atomic.Bool
		trace := &httptrace.ClientTrace{
			GotConn:              func(i httptrace.GotConnInfo) { reused.Store(i.Reused) },
			GotFirstResponseByte: func() { answered.Store(true) },
		}
		r := req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		if attempt > 0 && req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			r.Body = body
		}
		resp, err := t.Base.RoundTrip(r)
		if err == nil || !reused.Load() || answered.Load() || attempt >= staleRetries || req.Context().Err() != nil ||
			(req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) || errors.Is(err, context.DeadlineExceeded) {
			return resp, err
		}
	}
}

// CloseIdleConnections closes the idle connections of Base (so that
// http.Client.CloseIdleConnections reaches it).
func (t *StaleConnRetry) CloseIdleConnections() {
	if c, ok := t.Base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
