package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/admission"
	"github.com/nextact/nextact/nextaction"
)

// requestError is a request the server refuses: a 400, a 404 when
// notFound is set, a 409 when conflict is set, else status when set (a 413
// for a field over its limit, a 415 for an encoding nextact does not read).
type requestError struct {
	notFound bool
	conflict bool   // the resource is busy (a session's step in flight)
	status   int    // when non-zero, the status (notFound and conflict unset)
	param    string // offending field; empty for none
	code     string // short machine-readable code; empty for none
	msg      string
}

func (e *requestError) Error() string { return e.msg }

func invalid(param, format string, args ...any) *requestError {
	return &requestError{param: param, msg: fmt.Sprintf(format, args...)}
}

// tooLarge is a field (or the body, param "") over its limit: a 413 whose
// message names the limit.
func tooLarge(param, code, format string, args ...any) *requestError {
	return &requestError{status: http.StatusRequestEntityTooLarge, param: param, code: code, msg: fmt.Sprintf(format, args...)}
}

// sessionLimitError is a new session refused because MaxSessions are open:
// a server-wide capacity limit, so a 503 (not a client's 429), retried
// when the oldest idle session can expire.
type sessionLimitError struct {
	max        int
	retryAfter time.Duration
}

func (e *sessionLimitError) Error() string {
	return fmt.Sprintf("The server holds its maximum of %d sessions. End sessions you no longer need (DELETE /v1/sessions/{id}) or retry after the time in Retry-After, when idle sessions expire.", e.max)
}

// generationError is a generation that ended without a usable result.
type generationError struct {
	reason batching.FinishReason
	err    error
}

func (e *generationError) Error() string {
	if e.err == nil {
		return "generation ended: " + e.reason.String()
	}
	return fmt.Sprintf("generation ended (%s): %v", e.reason, e.err)
}

func (e *generationError) Unwrap() error { return e.err }

// errShuttingDown is a generation cut short because the server is stopping.
var errShuttingDown = errors.New("server is shutting down")

// finishError says why a finished chunk carries no complete result: nil for
// a stop or length finish. ctx is the request's context, which tells a
// deadline from a shutdown when the scheduler reports a cancellation.
func finishError(ctx context.Context, c batching.Chunk) error {
	switch c.Finish {
	case batching.FinishStop, batching.FinishLength:
		return nil
	case batching.FinishCancelled:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return context.DeadlineExceeded
		}
		return errShuttingDown
	case batching.FinishShutdown:
		return errShuttingDown
	case batching.FinishRejected: // dropped from the queue: c.Err says why
		if c.Err != nil {
			return c.Err
		}
		return &admission.OverloadError{Reason: admission.ReasonQueueTimeout, RetryAfter: time.Second}
	default:
		return &generationError{reason: c.Finish, err: c.Err}
	}
}

// waitError turns the error of Handle.Next/Wait (the request's context
// ended) into what the client is told.
func waitError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return context.DeadlineExceeded
	}
	return errShuttingDown
}

// apiError is OpenAI's error object.
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

type errorBody struct {
	Error apiError `json:"error"`
}

// httpFailure is an error as the client sees it.
type httpFailure struct {
	status int
	// retryAfter, when positive, is sent as Retry-After in whole seconds.
	retryAfter time.Duration
	body       errorBody
}

func failure(status int, typ, param, code, msg string) httpFailure {
	e := apiError{Message: msg, Type: typ}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return httpFailure{status: status, body: errorBody{Error: e}}
}

// statusClientClosed is nginx's status for a request whose client left.
const statusClientClosed = 499

const (
	typeInvalid    = "invalid_request_error"
	typeServer     = "server_error"
	typeOverloaded = "overloaded"
	typeRateLimit  = "requests" // OpenAI's type of a request-rate 429
)

// overloadMessages explain each admission rejection to the client.
var overloadMessages = map[string]string{
	admission.ReasonQueueFull:    "The server is at capacity: too many requests are waiting. Retry after the time in Retry-After.",
	admission.ReasonKVFull:       "The server is at capacity: the tokens reserved by queued and running requests exceed its KV cache budget. Retry after the time in Retry-After.",
	admission.ReasonGPUMemory:    "GPU memory is nearly full: only short requests (prompt plus max_tokens) are admitted now. Retry after the time in Retry-After, or shorten the request.",
	admission.ReasonGPUThrottled: "The GPU is throttled (thermal or power) and every slot is busy. Retry after the time in Retry-After.",
	admission.ReasonGPUStale:     "GPU telemetry is stale, so the server counts itself saturated and every slot is busy. Retry after the time in Retry-After.",
	admission.ReasonQueueTimeout: "The request waited too long for a slot. Retry after the time in Retry-After.",
	admission.ReasonPreempted:    "A request of a higher priority took this request's place in the queue. Retry after the time in Retry-After.",
}

// httpError is the one place an error becomes an HTTP status and body.
// internal reports whether the error is the server's fault and worth
// logging; its detail is not shown to the client.
func (s *Server) httpError(err error) (f httpFailure, internal bool) {
	var (
		reqErr   *requestError
		schedErr *batching.RequestError
		fibErr   *fiber.Error
		genErr   *generationError
		overErr  *admission.OverloadError
		rateErr  *rateLimitError
		authErr  *authError
		sessErr  *sessionLimitError
		fieldErr *nextaction.FieldError
		planErr  *nextaction.RequestError
	)
	if f, ok := modelFailure(err); ok { // acquire.go
		return f, false
	}
	switch {
	case errors.As(err, &reqErr):
		status := http.StatusBadRequest
		switch {
		case reqErr.status != 0:
			status = reqErr.status
		case reqErr.notFound:
			status = http.StatusNotFound
		case reqErr.conflict:
			status = http.StatusConflict
		}
		return failure(status, typeInvalid, reqErr.param, reqErr.code, reqErr.msg), false
	case errors.As(err, &fieldErr):
		return failure(http.StatusBadRequest, typeInvalid, fieldErr.Field, "", fieldErr.Error()), false
	case errors.As(err, &planErr):
		status := http.StatusBadRequest
		if planErr.TooLarge {
			status = http.StatusRequestEntityTooLarge
		}
		return failure(status, typeInvalid, planErr.Field, planErr.Code, planErr.Msg), false
	case errors.As(err, &schedErr):
		return failure(http.StatusBadRequest, typeInvalid, schedErr.Field, "", schedErr.Error()), false
	case errors.As(err, &authErr):
		f := failure(http.StatusUnauthorized, typeInvalid, "", "invalid_api_key", authErr.Error())
		return f, false
	case errors.As(err, &rateErr):
		f := failure(http.StatusTooManyRequests, typeRateLimit, "", "rate_limit_exceeded",
			"Rate limit reached for this API key (or client address). Retry after the time in Retry-After.")
		f.retryAfter = rateErr.retryAfter
		return f, false
	case errors.As(err, &sessErr):
		f := failure(http.StatusServiceUnavailable, typeOverloaded, "", "too_many_sessions", sessErr.Error())
		f.retryAfter = sessErr.retryAfter
		return f, false
	case errors.As(err, &overErr):
		msg := overloadMessages[overErr.Reason]
		if msg == "" {
			msg = "The server is overloaded. Retry after the time in Retry-After."
		}
		f := failure(http.StatusServiceUnavailable, typeOverloaded, "", overErr.Reason, msg)
		f.retryAfter = overErr.RetryAfter
		return f, false
	case errors.Is(err, errDraining):
		f := failure(http.StatusServiceUnavailable, typeServer, "", "shutting_down",
			"The server is shutting down and admits no new requests.")
		f.retryAfter = drainRetryAfter
		return f, false
	case errors.Is(err, batching.ErrClosed), errors.Is(err, errShuttingDown):
		return failure(http.StatusServiceUnavailable, typeServer, "", "shutting_down",
			"The server is shutting down."), false
	case errors.Is(err, errSessionStore):
		f := failure(http.StatusServiceUnavailable, typeServer, "", "session_store_unavailable",
			"The session store did not take the change; the session is as it was. Retry after the time in Retry-After.")
		f.retryAfter = time.Second
		return f, false
	case errors.Is(err, errClientGone):
		// Nobody reads this answer; nginx's 499 names the case in logs.
		return failure(statusClientClosed, typeInvalid, "", "client_closed_request",
			"The client closed the connection before the answer."), false
	case errors.Is(err, context.DeadlineExceeded):
		return failure(http.StatusGatewayTimeout, typeServer, "", "timeout",
			fmt.Sprintf("The generation exceeded the server's request timeout of %s.", s.cfg.RequestTimeout)), false
	case errors.As(err, &fibErr):
		return s.fiberFailure(fibErr), fibErr.Code >= 500
	case errors.As(err, &genErr):
		return failure(http.StatusInternalServerError, typeServer, "", "generation_failed",
			"The model failed while generating the response."), true
	default:
		return failure(http.StatusInternalServerError, typeServer, "", "",
			"The server had an error while processing your request."), true
	}
}

func (s *Server) fiberFailure(e *fiber.Error) httpFailure {
	switch e.Code {
	case http.StatusRequestEntityTooLarge:
		return failure(e.Code, typeInvalid, "", "request_too_large",
			fmt.Sprintf("The request body exceeds the limit of %d bytes.", s.cfg.BodyLimit))
	case http.StatusNotFound:
		return failure(e.Code, typeInvalid, "", "unknown_url", e.Message)
	case http.StatusMethodNotAllowed:
		return failure(e.Code, typeInvalid, "", "method_not_allowed", e.Message)
	case http.StatusRequestHeaderFieldsTooLarge:
		return failure(e.Code, typeInvalid, "", "request_header_too_large",
			fmt.Sprintf("The request headers exceed the limit of %d bytes.", s.cfg.HeaderLimit))
	}
	typ := typeInvalid
	if e.Code >= 500 {
		typ = typeServer
	}
	return failure(e.Code, typ, "", "", e.Message)
}

// handleError writes err as an OpenAI error response (in Ollama's shape
// on the Ollama API's paths). It is Fiber's
// ErrorHandler and is also called by the request logger.
func (s *Server) handleError(c *fiber.Ctx, err error) error {
	f, internal := s.httpError(err)
	if internal {
		s.log.Error("request failed", zap.String("path", strings.Clone(c.Path())), zap.Error(err))
	}
	if f.retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(int(math.Ceil(f.retryAfter.Seconds()))))
	}
	if f.status == http.StatusUnauthorized {
		c.Set(fiber.HeaderWWWAuthenticate, "Bearer")
	}
	if isOllamaPath(c.Path()) { // ollama.go
		return c.Status(f.status).JSON(ollamaErrorBody{Error: f.body.Error.Message})
	}
	return c.Status(f.status).JSON(f.body)
}
