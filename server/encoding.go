package server

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/gofiber/fiber/v2"
)

// Request bodies with a Content-Encoding are inflated here, before any
// handler reads them, under the same limit as plain bodies: --body-limit
// bounds the bytes received (fasthttp) and also the bytes they inflate to
// (413 past it), so a small compressed body cannot expand into gigabytes.
// Fiber's own c.Body() inflates without any limit; once this middleware has
// run, the body is plain and the Content-Encoding header is gone.

// maxCodings bounds the content codings of one body ("gzip, gzip" is two);
// each one costs a pass over up to --body-limit bytes.
const maxCodings = 2

var errInflatedTooLarge = errors.New("inflated body over the limit")

// inflateBody is the middleware that decodes Content-Encoding.
func (s *Server) inflateBody(c *fiber.Ctx) error {
	enc := c.Request().Header.Peek(fiber.HeaderContentEncoding)
	if len(enc) == 0 {
		return c.Next()
	}
	codings, err := parseCodings(string(enc))
	if err != nil {
		return err
	}
	if len(codings) > 0 {
		body := c.Request().Body()
		// Codings are listed in the order they were applied: undo the last
		// first.
		for i := len(codings) - 1; i >= 0; i-- {
			if body, err = inflate(codings[i], body, s.cfg.BodyLimit); err != nil {
				if errors.Is(err, errInflatedTooLarge) {
					return tooLarge("", "request_too_large", "The request body inflates to more than the limit of %d bytes (--body-limit bounds the decoded body too).", s.cfg.BodyLimit)
				}
				return invalid("", "The request body is not valid %s data: %v.", codings[i], err)
			}
		}
		c.Request().SetBodyRaw(body)
	}
	c.Request().Header.Del(fiber.HeaderContentEncoding)
	return c.Next()
}

// parseCodings reads a Content-Encoding header: gzip (x-gzip), deflate and
// br, at most maxCodings of them; identity is skipped. Anything else is a
// 415.
func parseCodings(h string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(h, ",") {
		c = strings.ToLower(strings.TrimSpace(c))
		switch c {
		case "identity", "":
			continue
		case "x-gzip":
			c = "gzip"
		case "gzip", "deflate", "br":
		default:
			return nil, &requestError{status: http.StatusUnsupportedMediaType, code: "unsupported_content_encoding",
				msg: fmt.Sprintf("Content-Encoding %q is not supported: use gzip, deflate, br or none.", truncate(c, 32))}
		}
		if len(out) == maxCodings {
			return nil, &requestError{status: http.StatusUnsupportedMediaType, code: "unsupported_content_encoding",
				msg: fmt.Sprintf("A request body may carry at most %d content codings.", maxCodings)}
		}
		out = append(out, c)
	}
	return out, nil
}

// inflate undoes one coding, reading at most limit bytes of output.
func inflate(coding string, in []byte, limit int) ([]byte, error) {
	var r io.Reader
	switch coding {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(in))
		if err != nil {
			return nil, err
		}
		r = zr
	case "deflate":
		// HTTP's deflate is zlib-wrapped; some clients send raw deflate.
		zr, err := zlib.NewReader(bytes.NewReader(in))
		if err != nil {
			r = flate.NewReader(bytes.NewReader(in))
		} else {
			r = zr
		}
	case "br":
		r = brotli.NewReader(bytes.NewReader(in))
	default:
		return nil, fmt.Errorf("unknown coding %q", coding)
	}
	out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, errInflatedTooLarge
	}
	return out, nil
}

// truncate shortens a client-supplied string quoted in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
