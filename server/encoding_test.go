package server_test

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"

	"github.com/nextact/nextact/server"
)

// compress applies the named coding (HTTP's names; "raw-deflate" is a
// deflate stream without zlib's wrapper, which some clients send).
func compress(t *testing.T, coding string, in []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		fw, err := flate.NewWriter(&buf, flate.BestSpeed)
		if err != nil {
			t.Fatal(err)
		}
		w = fw
	case "br":
		w = brotli.NewWriter(&buf)
	default:
		t.Fatalf("unknown coding %q", coding)
	}
	if _, err := w.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// doEncoded posts body with the Content-Encoding header enc.
func (e *env) doEncoded(t *testing.T, path, enc string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", enc)
	resp, err := e.srv.App().Test(req, 20000)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// Compressed request bodies are inflated under --body-limit: every coding
// a client sends gives the answer the plain body gives; a body that
// inflates past the limit is a 413, a coding nextact does not decode or
// more than two codings a 415, corrupt data a 400; and the server goes on
// serving after each.
func TestContentEncodings(t *testing.T) {
	const limit = 64 << 10
	e := newEnv(t, envOptions{cfg: server.Config{BodyLimit: limit}})
	plain := []byte(completionBody("encoded", `"max_tokens":4`))
	_, want := e.do(t, http.MethodPost, "/v1/completions", string(plain))
	wantText := choiceText(t, want)
	if wantText == "" {
		t.Fatalf("plain body: %s", want)
	}

	for _, tc := range []struct{ header, coding string }{
		{"gzip", "gzip"}, {"x-gzip", "gzip"}, {"deflate", "deflate"}, {"deflate", "raw-deflate"},
		{"br", "br"}, {"identity, GZIP", "gzip"},
	} {
		resp, b := e.doEncoded(t, "/v1/completions", tc.header, compress(t, tc.coding, plain))
		if resp.StatusCode != http.StatusOK || choiceText(t, b) != wantText {
			t.Errorf("Content-Encoding %q (%s): %d %s; want 200 with %q", tc.header, tc.coding, resp.StatusCode, b, wantText)
		}
	}
	// Two codings, applied in the order listed.
	twice := compress(t, "br", compress(t, "gzip", plain))
	if resp, b := e.doEncoded(t, "/v1/completions", "gzip, br", twice); resp.StatusCode != http.StatusOK || choiceText(t, b) != wantText {
		t.Errorf("gzip, br: %d %s", resp.StatusCode, b)
	}

	// A bomb: far under the limit compressed, far over it inflated.
	bomb := compress(t, "gzip", append([]byte(`{"model":"`+testModel+`","prompt":"`), bytes.Repeat([]byte("a"), 64*limit)...))
	if len(bomb) >= limit/4 {
		t.Fatalf("the bomb is %d bytes compressed", len(bomb))
	}
	for _, tc := range []struct {
		name, enc string
		body      []byte
		status    int
		code      string
	}{
		{"inflates past the limit", "gzip", bomb, http.StatusRequestEntityTooLarge, "request_too_large"},
		{"compress is not decoded", "compress", plain, http.StatusUnsupportedMediaType, "unsupported_content_encoding"},
		{"three codings", "gzip, gzip, gzip", compress(t, "gzip", compress(t, "gzip", compress(t, "gzip", plain))), http.StatusUnsupportedMediaType, "unsupported_content_encoding"},
		{"corrupt gzip", "gzip", []byte("not gzip at all"), http.StatusBadRequest, "invalid_request_error"},
		{"corrupt brotli", "br", []byte{0xff, 0xff, 0xff, 0xff}, http.StatusBadRequest, "invalid_request_error"},
	} {
		resp, b := e.doEncoded(t, "/v1/completions", tc.enc, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d %s, want %d", tc.name, resp.StatusCode, b, tc.status)
			continue
		}
		if ae := decodeErr(t, b); ae.Error.Type != tc.code && deref(ae.Error.Code) != tc.code {
			t.Errorf("%s: error %s, want %s", tc.name, b, tc.code)
		}
	}
	long := strings.Repeat("z", 200)
	resp, b := e.doEncoded(t, "/v1/completions", long, plain)
	if resp.StatusCode != http.StatusUnsupportedMediaType || strings.Contains(string(b), long) {
		t.Errorf("a long unknown coding: %d %s; want 415 quoting it shortened", resp.StatusCode, b)
	}
	if resp, b := e.do(t, http.MethodPost, "/v1/completions", string(plain)); resp.StatusCode != http.StatusOK || choiceText(t, b) != wantText {
		t.Errorf("after the refusals: %d %s", resp.StatusCode, b)
	}
}

// choiceText is the first choice's text of a completions response ("" when
// the body is not one).
func choiceText(t *testing.T, b []byte) string {
	t.Helper()
	var r struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
	}
	if json.Unmarshal(b, &r) != nil || len(r.Choices) == 0 {
		return ""
	}
	return r.Choices[0].Text
}
