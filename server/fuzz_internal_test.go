package server

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"testing"

	"github.com/nextact/nextact/nextaction"
)

// FuzzDecodeErrorPath: for any body, decoding a next-action request never
// panics, and a type error names a path that exists in the body's shape
// (keys and indexes the body has).
func FuzzDecodeErrorPath(f *testing.F) {
	f.Add([]byte(`{"model":"m","history":[{"action":{"type":"click","name":"a"}},{"action":{"type":"click","name":5}}]}`))
	f.Add([]byte(`{"model":["m"],"page":{"x":1}}`))
	f.Add([]byte(`[1,2,{"a":[[]]}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var r nextaction.NextActionRequest
		err := decodeJSON(body, &r)
		var re *requestError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("decode error of another type: %v", err)
		}
		var typ *json.UnmarshalTypeError
		if errors.As(json.Unmarshal(body, &r), &typ) {
			_ = jsonPathAt(body, typ.Offset)
		}
		_ = jsonPathAt(body, int64(len(body)))
	})
}

// FuzzInflate: any body, under any coding, inflates to at most the limit
// or fails; it never panics.
func FuzzInflate(f *testing.F) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(bytes.Repeat([]byte("a"), 5000))
	w.Close()
	f.Add(gz.Bytes(), uint8(0))
	f.Add([]byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01}, uint8(1))
	f.Add([]byte{0x0b, 0x02, 0x80, 0x61, 0x03}, uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		coding := []string{"gzip", "deflate", "br"}[int(which)%3]
		const limit = 4096
		out, err := inflate(coding, data, limit)
		if err == nil && len(out) > limit {
			t.Fatalf("%s: %d bytes past the limit", coding, len(out))
		}
	})
}
