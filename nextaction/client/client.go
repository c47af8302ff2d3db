// Package client is a typed Go client for nextact's next-action API
// (POST /v1/actions/next) and its model list (GET /v1/models). The bench
// and eval tools use it. A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nextact/nextact/nextaction"
)

// Limits on the bodies the client reads.
const (
	maxResponseBytes = 16 << 20
	maxErrorBytes    = 64 << 10
)

// Client calls one nextact server.
type Client struct {
	base   string
	http   *http.Client
	apiKey string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with h instead of
// http.DefaultClient.
func WithHTTPClient(h *http.Client) Option {
	return func(c *Client) { c.http = h }
}

// WithAPIKey makes the Client send "Authorization: Bearer key".
func WithAPIKey(key string) Option {
	return func(c *Client) { c.apiKey = key }
}

// New returns a client of the server at baseURL, the URL the API paths
// (/v1/...) are appended to, such as http://127.0.0.1:8080.
func New(baseURL string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), http: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c
}

// APIError is an answer with a status other than 2xx.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// RetryAfter is the server's Retry-After header as a duration (from
	// seconds or an HTTP date); 0 when absent or invalid.
	RetryAfter time.Duration
	// Err is the error object of the body. When the body is not one, Err
	// holds the body's start (or the status text) as its Message.
	Err nextaction.APIError
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "nextact: %d %s: %s", e.Status, http.StatusText(e.Status), e.Err.Message)
	var details []string
	if e.Err.Param != nil {
		details = append(details, "param "+*e.Err.Param)
	}
	if e.Err.Code != nil {
		details = append(details, "code "+*e.Err.Code)
	}
	if e.RetryAfter > 0 {
		details = append(details, "retry after "+e.RetryAfter.String())
	}
	if len(details) > 0 {
		b.WriteString(" (" + strings.Join(details, ", ") + ")")
	}
	return b.String()
}

// Retryable reports whether the same request may succeed later: the server
// was overloaded (429) or unavailable (503).
func (e *APIError) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
}

// NextAction asks for the next action of a simulated shopper. A non-2xx
// answer is returned as an *APIError (not wrapped); a transport error wraps
// the http.Client's, so errors.Is(err, context.Canceled) works.
func (c *Client) NextAction(ctx context.Context, req nextaction.NextActionRequest) (*nextaction.NextActionResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("next action: encode request: %w", err)
	}
	var resp nextaction.NextActionResponse
	if err := c.do(ctx, http.MethodPost, "/v1/actions/next", body, &resp); err != nil {
		return nil, wrap("next action", err)
	}
	return &resp, nil
}

// Models returns the ids of the models the server serves. A non-2xx
// answer is an *APIError.
func (c *Client) Models(ctx context.Context) ([]string, error) {
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/models", nil, &list); err != nil {
		return nil, wrap("models", err)
	}
	ids := make([]string, len(list.Data))
	for i, m := range list.Data {
		ids[i] = m.ID
	}
	return ids, nil
}

// wrap prefixes err with op, except an *APIError, which is returned as it
// is: its text already says what happened.
func wrap(op string, err error) error {
	var e *APIError
	if errors.As(err, &e) {
		return e
	}
	return fmt.Errorf("%s: %w", op, err)
}

// do sends one request and decodes a 2xx body into out.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiError(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(out); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}

// apiError reads a non-2xx answer.
func apiError(resp *http.Response) *APIError {
	e := &APIError{Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	var body nextaction.ErrorResponse
	if err := json.Unmarshal(raw, &body); err == nil && body.Error.Message != "" {
		e.Err = body.Error
		return e
	}
	msg := strings.TrimSpace(strings.ToValidUTF8(string(raw), "\uFFFD"))
	if len(msg) > 512 {
		msg = msg[:512] + "..."
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	e.Err = nextaction.APIError{Message: msg}
	return e
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date
// (relative to now). Anything else is 0.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if s, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now))
	}
	return 0
}
