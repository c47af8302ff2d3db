package main

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// page is a small next-action page for the hardening tests.
const hardeningPage = `<div><input name="search_input"/><a name="shirt.view_product">Shirt</a><button name="cart.buy_now">Buy</button></div>`

// max_tokens (or max_completion_tokens) at the integer maximum is a 400
// context_length_exceeded on every endpoint that takes it, never a
// generation that runs into the context end; a request decoding beside
// those attempts is unaffected, and the KV reservation gauge never goes
// negative. (Before the fix the sum wrapped: the request decoded until the
// slot's context ended, the step failed, every request in it got a 500, and
// nextact_kv_reserved_tokens read -9.2e18.)
func TestMaxTokensAtIntMaxRefusedEverywhere(t *testing.T) {
	ts := startServer(t, testConfig())
	id := ts.modelID()
	const huge = math.MaxInt64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a step-mate: decodes while the huge requests arrive
		defer wg.Done()
		code, _, out := post(t, ts.URL+"/v1/chat/completions", chatReq(id, "a neighbour", map[string]any{"max_tokens": 200}))
		if code != 200 {
			t.Errorf("step-mate: %d %v", code, out)
		}
	}()
	sessCode, _, sess := post(t, ts.URL+"/v1/sessions", map[string]any{"model": id})
	if sessCode != 200 {
		t.Fatalf("create session: %d %v", sessCode, sess)
	}
	cases := []struct {
		name, path, param string
		body              map[string]any
	}{
		{"completions", "/v1/completions", "max_tokens", map[string]any{"model": id, "prompt": "hello", "max_tokens": huge}},
		{"chat max_tokens", "/v1/chat/completions", "max_tokens", chatReq(id, "hello", map[string]any{"max_tokens": huge})},
		{"chat max_completion_tokens", "/v1/chat/completions", "max_tokens", chatReq(id, "hello", map[string]any{"max_completion_tokens": huge})},
		{"next action", "/v1/actions/next", "max_tokens", map[string]any{"model": id, "page": hardeningPage, "max_tokens": huge}},
		{"session step", "/v1/sessions/" + sess["id"].(string) + "/steps", "max_tokens", map[string]any{"page": hardeningPage, "max_tokens": huge}},
	}
	for _, tc := range cases {
		code, _, out := post(t, ts.URL+tc.path, tc.body)
		e, _ := out["error"].(map[string]any)
		if code != 400 || e["code"] != "context_length_exceeded" || e["param"] != tc.param {
			t.Errorf("%s: %d %v, want 400 context_length_exceeded on %s", tc.name, code, out, tc.param)
		}
		if r := sum(scrape(t, ts.URL), "nextact_kv_reserved_tokens"); r < 0 {
			t.Errorf("%s: nextact_kv_reserved_tokens = %g", tc.name, r)
		}
	}
	wg.Wait()
	waitIdle(t, ts)
	if st := ts.stack.sched.Stats(); st.ReservedTokens != 0 {
		t.Fatalf("reservation left after every request ended: %+v", st)
	}
}

// rawExchange writes req on a fresh connection and reads until the server
// closes it or wait passes; it returns what came back.
func rawExchange(t *testing.T, base string, req []byte, wait time.Duration) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
		if strings.Contains(out.String(), "\r\n\r\n{") && strings.HasSuffix(out.String(), "}}") {
			return out.String() // one whole JSON error answer
		}
	}
}

// postEncoded posts body with a Content-Encoding.
func postEncoded(t *testing.T, url, encoding string, body []byte) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", encoding)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("%s body: status %d, not JSON: %q", encoding, resp.StatusCode, data)
	}
	return resp.StatusCode, out
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Compressed bodies inflate under --body-limit: a small body that inflates
// past it is a 413 (on c74a939 it was inflated whole: 3 MB of gzip
// inflating to 3 GB killed the process), nested codings too; encodings
// nextact does not read are a 415; valid gzip, deflate and br bodies work.
func TestCompressedBodiesBounded(t *testing.T) {
	c := testConfig()
	c.BodyLimit = 256 << 10
	ts := startServer(t, c)
	url := ts.URL + "/v1/chat/completions"
	plain, _ := json.Marshal(chatReq(ts.modelID(), "hi", map[string]any{"max_tokens": 2}))

	var zl, br bytes.Buffer
	zw := zlib.NewWriter(&zl)
	zw.Write(plain)
	zw.Close()
	bw := brotli.NewWriter(&br)
	bw.Write(plain)
	bw.Close()
	for enc, body := range map[string][]byte{"gzip": gzipped(t, plain), "deflate": zl.Bytes(), "br": br.Bytes(), "gzip, gzip": gzipped(t, gzipped(t, plain)), "identity": plain} {
		if code, out := postEncoded(t, url, enc, body); code != 200 {
			t.Errorf("valid %s body: %d %v", enc, code, out)
		}
	}

	// 32 MiB of JSON white space after a valid request: valid JSON, 128x
	// the limit once inflated, about 32 KiB compressed.
	bomb := append(append([]byte{}, plain[:len(plain)-1]...), bytes.Repeat([]byte(" "), 32<<20)...)
	bomb = append(bomb, '}')
	gz := gzipped(t, bomb)
	if len(gz) > c.BodyLimit {
		t.Fatalf("bomb of %d bytes does not pass the raw limit", len(gz))
	}
	for enc, body := range map[string][]byte{"gzip": gz, "gzip, gzip": gzipped(t, gz)} {
		code, out := postEncoded(t, url, enc, body)
		e, _ := out["error"].(map[string]any)
		if code != 413 || e["code"] != "request_too_large" {
			t.Errorf("%s bomb: %d %v, want 413 request_too_large", enc, code, out)
		}
	}
	for _, enc := range []string{"zstd", "gzip, gzip, gzip", "compress"} {
		code, out := postEncoded(t, url, enc, plain)
		if e, _ := out["error"].(map[string]any); code != 415 || e["code"] != "unsupported_content_encoding" {
			t.Errorf("%s: %d %v, want 415", enc, code, out)
		}
	}
	if code, _, out := post(t, url, chatReq(ts.modelID(), "still serving", nil)); code != 200 {
		t.Fatalf("after: %d %v", code, out)
	}
}

// What fasthttp answers by itself is in the API's error shape: an unknown
// method (plain text on c74a939), a header line without a colon (no answer
// until the read timeout), a malformed header (a 400 that echoed the raw
// request), and Expect: 100-continue over the body limit (told "100
// Continue", then 413).
func TestMalformedHTTPAnsweredInShape(t *testing.T) {
	c := testConfig()
	c.HeaderTimeout = 300 * time.Millisecond
	ts := startServer(t, c)
	cases := []struct {
		name, req, status string
		wait              time.Duration
	}{
		{"unknown method", "FOO /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", "501", 5 * time.Second},
		{"header without colon", "GET /v1/models HTTP/1.1\r\nHost: x\r\nBadHeaderNoColon\r\n\r\n", "408", 5 * time.Second},
		{"bad content length", "POST /v1/models HTTP/1.1\r\nHost: x\r\nX-Secret: s3cr3t-marker\r\nContent-Length: abc\r\n\r\n", "400", 5 * time.Second},
		{"expect over limit", "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n", "413", 5 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := rawExchange(t, ts.URL, []byte(tc.req), tc.wait)
			if !strings.HasPrefix(got, "HTTP/1.1 "+tc.status) {
				t.Fatalf("answer %q, want status %s first", got, tc.status)
			}
			_, body, _ := strings.Cut(got, "\r\n\r\n")
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("body not in the error shape: %q", body)
			}
			if strings.Contains(got, "s3cr3t") || strings.Contains(got, "100 Continue") {
				t.Fatalf("answer echoes the request or invites the body: %q", got)
			}
		})
	}
	if code, _, out := post(t, ts.URL+"/v1/chat/completions", chatReq(ts.modelID(), "ok", nil)); code != 200 {
		t.Fatalf("after: %d %v", code, out)
	}
}

// A connection that never sent a request, closed at shutdown, is not an
// error in the log (c74a939 logged "request failed" with a Bad Gateway).
func TestIdleConnectionAtShutdownLogsNoError(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	st, err := build(testConfig(), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = st.srv.Serve(ln) }()
	st.srv.MarkReady()
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	time.Sleep(50 * time.Millisecond) // accepted
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range logs.FilterLevelExact(zapcore.ErrorLevel).All() {
		t.Errorf("error logged at shutdown: %s %v", e.Message, e.ContextMap())
	}
}

// Next-action errors say what they are: a page over --max-page-bytes names
// the page limit (c74a939 quoted the body limit), and a type error in a
// nested field names its index (c74a939: history.action.name).
func TestActionErrorsNameTheirLimitAndIndex(t *testing.T) {
	ts := startServer(t, testConfig())
	url := ts.URL + "/v1/actions/next"
	big := "<div>" + strings.Repeat("x", 70<<10) + "</div>"
	code, _, out := post(t, url, map[string]any{"model": ts.modelID(), "page": big})
	e, _ := out["error"].(map[string]any)
	if msg, _ := e["message"].(string); code != 413 || e["param"] != "page" || !strings.Contains(msg, "65536") || strings.Contains(msg, "1048576") {
		t.Errorf("page over its limit: %d %v", code, out)
	}
	body := fmt.Sprintf(`{"model":%q,"page":%q,"history":[{"action":{"type":"click","name":"a"}},{"action":{"type":"click","name":5}}]}`, ts.modelID(), hardeningPage)
	code, _, out = post(t, url, body)
	if e, _ := out["error"].(map[string]any); code != 400 || e["param"] != "history[1].action.name" {
		t.Errorf("nested type error: %d %v, want param history[1].action.name", code, out)
	}
}

// Non-streaming clients that close their connection before the answer free
// their slots: their requests end cancelled within a poll, far from their
// 2,000 tokens (on c74a939 each ran to the end for nobody).
func TestGoneClientsFreeTheirSlots(t *testing.T) {
	c := testConfig()
	c.Ctx = 2048
	ts := startServer(t, c)
	const n = 8
	for i := range n {
		body := fmt.Sprintf(`{"model":%q,"prompt":"tell a long story","max_tokens":2000,"temperature":1,"seed":%d}`, ts.modelID(), i)
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		conn.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := scrape(t, ts.URL)
		if got := sum(m, "nextact_requests_finished_total"); got >= n {
			// A random model may also end a request early by itself.
			cancelled, stopped := sum(m, "nextact_requests_finished_total", "reason=cancelled"), sum(m, "nextact_requests_finished_total", "reason=stop")
			if cancelled+stopped != n || cancelled < n/2 {
				t.Fatalf("of %d gone clients' requests, %g cancelled and %g stopped; finished: %g", n, cancelled, stopped, got)
			}
			if toks := sum(m, "nextact_generation_tokens_total"); toks > n*2000/2 {
				t.Fatalf("%g tokens generated for gone clients", toks)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests of gone clients still running: %+v", ts.stack.sched.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitIdle(t, ts)
	if code, _, out := post(t, ts.URL+"/v1/chat/completions", chatReq(ts.modelID(), "next", nil)); code != 200 {
		t.Fatalf("after: %d %v", code, out)
	}
}

// errCode posts body and returns the status and the error's code.
func errCode(t *testing.T, url string, body any) (int, string, map[string]any) {
	t.Helper()
	code, _, out := post(t, url, body)
	e, _ := out["error"].(map[string]any)
	c, _ := e["code"].(string)
	return code, c, out
}

// Schemas that unroll into huge grammars are a 400 naming the limit before
// anything large is built (c74a939: the 306-byte schema below ran the
// process out of memory); the 64x64 arrays compile, and ten of them
// stay within the grammar cache's byte bound (ten held 762 MB).
func TestSchemaBombsRefused(t *testing.T) {
	c := testConfig()
	c.GrammarCacheBytes = 32 << 20
	ts := startServer(t, c)
	url := ts.URL + "/v1/chat/completions"
	withSchema := func(schema string) map[string]any {
		return chatReq(ts.modelID(), "numbers", map[string]any{"max_tokens": 16,
			"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "s", "schema": json.RawMessage(schema)}}})
	}
	bomb := `{"type":"array","maxItems":4096,"items":{"type":"array","maxItems":4096,"items":{"type":"integer"}}}`
	if code, ec, out := errCode(t, url, withSchema(bomb)); code != 400 || ec != "schema_too_large" {
		t.Fatalf("306-byte schema: %d %v", code, out)
	}
	for i := range 10 {
		s := fmt.Sprintf(`{"type":"array","maxItems":64,"items":{"type":"array","maxItems":64,"items":{"type":"integer","description":"%d"}}}`, i)
		if code, _, out := post(t, url, withSchema(s)); code != 200 {
			t.Fatalf("64x64 schema %d: %d %v", i, code, out)
		}
	}
	if n, b := ts.stack.model.Grammars.Cache().Size(); b > 32<<20 {
		t.Fatalf("grammar cache holds %d grammars, %d bytes, over its bound", n, b)
	}
}

// Inputs whose preparation was quadratic on c74a939 are refused or
// prepared in linear time, within a generous client timeout: 20,000 empty
// messages (34 s there), 200,000 <|eot_id|> in a completions prompt (38 s
// for 100,000), a 100 KB const and an enum of 100,000 integers.
func TestQuadraticInputsBounded(t *testing.T) {
	c := testConfig()
	c.BodyLimit = 4 << 20
	ts := startServer(t, c)
	id := ts.modelID()
	http.DefaultClient.Timeout = 30 * time.Second
	t.Cleanup(func() { http.DefaultClient.Timeout = 0 })

	msgs := make([]map[string]any, 20_000)
	for i := range msgs {
		msgs[i] = map[string]any{"role": "user", "content": ""}
	}
	if code, ec, out := errCode(t, ts.URL+"/v1/chat/completions", map[string]any{"model": id, "messages": msgs}); code != 400 || ec != "too_many_messages" {
		t.Errorf("20,000 messages: %d %v", code, out)
	}
	// Under the message bound, many empty messages are prepared in pieces.
	if code, ec, out := errCode(t, ts.URL+"/v1/chat/completions", map[string]any{"model": id, "messages": msgs[:2000]}); code != 400 || ec != "context_length_exceeded" {
		t.Errorf("2,000 messages: %d %v", code, out)
	}
	prompt := strings.Repeat("<|eot_id|>", 200_000)
	if code, ec, out := errCode(t, ts.URL+"/v1/completions", map[string]any{"model": id, "prompt": prompt}); code != 400 || ec != "context_length_exceeded" {
		t.Errorf("200,000 <|eot_id|>: %d %v", code, out)
	}
	ints := make([]string, 100_000)
	for i := range ints {
		ints[i] = fmt.Sprint(i)
	}
	for name, schema := range map[string]string{
		"100 KB const":             `{"const":"` + strings.Repeat("a", 100_000) + `"}`,
		"enum of 100,000 integers": `{"enum":[` + strings.Join(ints, ",") + `]}`,
	} {
		req := chatReq(id, "x", map[string]any{"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"schema": json.RawMessage(schema)}}})
		if code, ec, out := errCode(t, ts.URL+"/v1/chat/completions", req); code != 400 || ec != "schema_too_large" {
			t.Errorf("%s: %d %v", name, code, out)
		}
	}
	stop := strings.Repeat("s", 10_000)
	if code, _, out := errCode(t, ts.URL+"/v1/chat/completions", chatReq(id, "x", map[string]any{"stop": []string{stop}})); code != 400 {
		t.Errorf("10 KB stop string: %d %v", code, out)
	}
}

// A session keeps at most --max-session-bytes of text (default 16 bytes per
// token of --ctx): a larger persona is a 413 (c74a939 kept 4 MB personas
// that no step could ever fit), and so is a step whose page would take the
// session past it; the session-bytes gauge stays small.
func TestSessionTextBounded(t *testing.T) {
	c := testConfig()
	c.BodyLimit = 8 << 20
	ts := startServer(t, c)
	id := ts.modelID()
	limit := 16 * c.Ctx
	code, ec, out := errCode(t, ts.URL+"/v1/sessions", map[string]any{"model": id, "persona": strings.Repeat("p", 4<<20)})
	if code != 413 || ec != "session_too_large" {
		t.Fatalf("4 MB persona: %d %v", code, out)
	}
	code, _, sess := post(t, ts.URL+"/v1/sessions", map[string]any{"model": id, "persona": strings.Repeat("p", limit-1000)})
	if code != 200 {
		t.Fatalf("persona under the limit: %d %v", code, sess)
	}
	page := "<div>" + strings.Repeat("y", 2000) + `<a name="go">go</a></div>`
	code, ec, out = errCode(t, ts.URL+"/v1/sessions/"+sess["id"].(string)+"/steps", map[string]any{"page": page})
	if code != 413 || ec != "session_too_large" {
		t.Fatalf("step past the limit: %d %v", code, out)
	}
	if b := sum(scrape(t, ts.URL), "nextact_session_history_bytes"); b > float64(limit) {
		t.Fatalf("sessions hold %g bytes", b)
	}
}
