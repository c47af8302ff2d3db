package eval_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nextact/nextact/eval"
	"github.com/nextact/nextact/nextaction"
)

// chatReq is what the fake OpenAI server reads.
type chatReq struct {
	Model          string          `json:"model"`
	Messages       []chatMsg       `json:"messages"`
	MaxTokens      int             `json:"max_tokens"`
	Temperature    float64         `json:"temperature"`
	Seed           *uint64         `json:"seed"`
	ResponseFormat json.RawMessage `json:"response_format"`
}

type chatMsg struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// convKey identifies a conversation by everything after the system
// prompt.
func convKey(msgs []chatMsg) string {
	h := sha256.New()
	for _, m := range msgs[1:] {
		fmt.Fprintf(h, "%s\x00%d\x00%s", m.Role, len(m.Content), m.Content)
	}
	return string(h.Sum(nil))
}

// fakeOpenAI is an OpenAI-compatible server answering from a table of
// conversations; hook (may be nil) runs first on each request and can
// answer instead (returning true).
type fakeOpenAI struct {
	*httptest.Server
	answers  map[string]string // conversation key -> answer text
	requests atomic.Int64
	mu       sync.Mutex
	hook     func(n int64, w http.ResponseWriter, r *chatReq) bool
	schema   atomic.Int64 // requests with response_format json_schema
	maxBody  atomic.Int64 // the largest request body
}

func newFakeOpenAI(t testing.TB, answers map[string]string) *fakeOpenAI {
	f := &fakeOpenAI{answers: answers}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/models":
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"fake-model","object":"model"}]}`)
		return
	case "/v1/chat/completions":
	default:
		http.NotFound(w, r)
		return
	}
	n := f.requests.Add(1)
	raw, _ := io.ReadAll(r.Body)
	storeMax(&f.maxBody, int64(len(raw)))
	var req chatReq
	// The seed must fit the integer types of every server (OpenAI's is
	// int64; some take int32).
	if err := json.Unmarshal(raw, &req); err != nil || len(req.Messages) < 2 || req.Seed == nil || *req.Seed >= 1<<31 {
		http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
		return
	}
	if strings.Contains(string(req.ResponseFormat), `"json_schema"`) {
		f.schema.Add(1)
	}
	f.mu.Lock()
	hook := f.hook
	f.mu.Unlock()
	if hook != nil && hook(n, w, &req) {
		return
	}
	text, ok := f.answers[convKey(req.Messages)]
	if !ok {
		text = `{"rationale":"unknown case","action":{"type":"terminate"}}`
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": text}, "finish_reason": "stop"}},
		"usage":   map[string]int{"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
	})
}

// storeMax raises a to v when v is larger.
func storeMax(a *atomic.Int64, v int64) {
	for m := a.Load(); v > m && !a.CompareAndSwap(m, v); m = a.Load() {
	}
}

func (f *fakeOpenAI) setHook(h func(n int64, w http.ResponseWriter, r *chatReq) bool) {
	f.mu.Lock()
	f.hook = h
	f.mu.Unlock()
}

// planned is the fake's answer to a case and what the answer means.
type planned struct {
	text   string
	action *nextaction.Action // what the answer's action reads as; nil: none
}

// plan decides the answer of case i (the first case of its conversation):
// right answers in several wrappings, a terminate (or, on a terminate, a
// click on the page's first clickable), text without an action, and a
// click on an element no page has.
func plan(i int, c eval.Case) planned {
	truth := c.Truth
	js := nextaction.PromptedOutput("because", truth)
	switch i % 7 {
	case 0:
		return planned{js, &truth}
	case 1:
		return planned{"Here you go:\n```json\n" + js + "\n```", &truth}
	case 2:
		return planned{`<think>maybe {"action":{"type":"terminate"}}</think>` + js, &truth}
	case 3:
		if truth.Type != nextaction.TypeTerminate {
			a := nextaction.Action{Type: nextaction.TypeTerminate}
			return planned{nextaction.PromptedOutput("done", a), &a}
		}
		p, _ := nextaction.ParsePage(c.Page)
		a := nextaction.Action{Type: nextaction.TypeClick, Name: p.Clickables()[0]}
		return planned{nextaction.PromptedOutput("one more", a), &a}
	case 4:
		return planned{"I am not sure what the shopper would do.", nil}
	case 5:
		a := nextaction.Action{Type: nextaction.TypeClick, Name: "no.such.element"}
		return planned{nextaction.PromptedOutput("hmm", a), &a}
	}
	up := strings.Replace(js, `"type":"`+truth.Type, `"type":"`+strings.ToUpper(truth.Type), 1)
	return planned{up, &truth} // the type is normalized
}

// messagesOf is the conversation the harness sends for c with no
// reduction.
func messagesOf(t testing.TB, c eval.Case) []chatMsg {
	t.Helper()
	hist := make([]nextaction.Step, len(c.History))
	for i, s := range c.History {
		hist[i] = nextaction.Step{Page: s.Page, Action: s.Action, Rationale: s.Rationale}
	}
	msgs, err := nextaction.BuildPrompt(nextaction.FormatPrompted, nextaction.PromptInput{Page: c.Page, History: hist, Persona: c.Persona})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]chatMsg, len(msgs))
	for i, m := range msgs {
		out[i] = chatMsg{m.Role, m.Content}
	}
	return out
}

// expected is what the metrics must be, computed here independently of
// the package's aggregation.
type expected struct {
	cases, correct, unparsed, invalid int
	accuracy, micro                   float64
	tp, fp, fn, tn                    int
	correctByCase                     []bool
}

// setup writes a fixture and plans the fake's answers for its cases.
func setup(t testing.TB, o eval.FixtureOptions) (answers map[string]string, jsonlPath string, ds *eval.Dataset, want expected) {
	t.Helper()
	_, jsonlPath, _ = writeFixture(t, o)
	ds, err := eval.Load(jsonlPath, "")
	if err != nil {
		t.Fatal(err)
	}
	cases := ds.Cases()
	purchase := ds.PurchaseNames()
	answers = map[string]string{}
	byKey := map[string]planned{}
	var accSum float64
	sessions, sessCases, sessCorrect := 0, 0, 0
	for i, c := range cases {
		key := convKey(messagesOf(t, c))
		p, seen := byKey[key]
		if !seen {
			p = plan(i, c)
			byKey[key] = p
			answers[key] = p.text
		}
		right := p.action != nil && *p.action == c.Truth
		want.correctByCase = append(want.correctByCase, right)
		want.cases++
		sessCases++
		if right {
			want.correct++
			sessCorrect++
		}
		switch {
		case p.action == nil:
			want.unparsed++
		case p.action.Name == "no.such.element":
			want.invalid++
		}
		if c.Last {
			predBuy := p.action != nil && p.action.Type == nextaction.TypeClick && purchase[p.action.Name]
			switch {
			case c.Purchase && predBuy:
				want.tp++
			case c.Purchase:
				want.fn++
			case predBuy:
				want.fp++
			default:
				want.tn++
			}
		}
		if i == len(cases)-1 || cases[i+1].SessionID != c.SessionID {
			accSum += float64(sessCorrect) / float64(sessCases)
			sessions++
			sessCases, sessCorrect = 0, 0
		}
	}
	want.accuracy = accSum / float64(sessions)
	want.micro = float64(want.correct) / float64(want.cases)
	return answers, jsonlPath, ds, want
}

// config is a run against url with a budget that reduces nothing.
func config(data, url, out string) eval.Config {
	return eval.Config{
		Data: data, Out: out, Seed: 5,
		Target: eval.TargetConfig{URL: url, Mode: eval.ModeOpenAI, Format: "prompted"},
		Gen:    eval.GenOptions{MaxTokens: 256},
		Budget: eval.Budget{MaxPageBytes: 512 << 10, Ctx: 1 << 22, BytesPerToken: 1, MaxPersonaBytes: 8192, MaxBodyBytes: 8 << 20, Rationales: true},
		Run:    eval.RunOptions{Concurrency: 8, Retries: 3, MaxRetryWait: time.Minute},
		// Few resamples: the intervals are tested elsewhere.
		Bootstrap: 50,
	}
}

// syncBuffer is a strings.Builder safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// noSleep records the waits instead of waiting.
type noSleep struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *noSleep) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func checkExpected(t *testing.T, rep *eval.Report, want expected) {
	t.Helper()
	m := rep.Runs[0].Metrics
	if m.Cases != want.cases || m.Correct != want.correct || m.Answers.Unparsed != want.unparsed || m.Answers.Invalid != want.invalid {
		t.Errorf("cases %d correct %d unparsed %d invalid %d, want %d %d %d %d", m.Cases, m.Correct, m.Answers.Unparsed, m.Answers.Invalid, want.cases, want.correct, want.unparsed, want.invalid)
	}
	o := m.Outcome
	if o.TP != want.tp || o.FP != want.fp || o.FN != want.fn || o.TN != want.tn {
		t.Errorf("outcome tp %d fp %d fn %d tn %d, want %d %d %d %d", o.TP, o.FP, o.FN, o.TN, want.tp, want.fp, want.fn, want.tn)
	}
	near(t, "accuracy", m.Accuracy.Value, want.accuracy)
	near(t, "micro accuracy", m.MicroAccuracy.Value, want.micro)
	if f1, ok := eval.F1(want.tp, want.fp, want.fn); ok {
		near(t, "outcome F1", o.F1.Value, f1)
	} else if o.F1.Value != nil {
		t.Errorf("F1 %v, want undefined", *o.F1.Value)
	}
}

// A fake OpenAI server that answers known actions for known cases, in
// several wrappings, yields exactly the expected accuracy and F1.
func TestFakeOpenAIExactMetrics(t *testing.T) {
	t.Parallel()
	answers, data, _, want := setup(t, eval.FixtureOptions{Sessions: 40, Seed: 3})
	if want.tp == 0 || want.tn == 0 || want.unparsed == 0 || want.correct == want.cases {
		t.Fatalf("the fixture does not exercise the metrics: %+v", want)
	}
	srv := newFakeOpenAI(t, answers)
	cfg := config(data, srv.URL, t.TempDir())
	cfg.Target.JSONSchema = true
	var out, prog syncBuffer
	rep, err := eval.Run(context.Background(), cfg, eval.Deps{Out: &out, Progress: &prog, Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	checkExpected(t, rep, want)
	if p := prog.String(); !strings.Contains(p, "\r\033[K[a] [") || !strings.Contains(p, fmt.Sprintf("%d/%d cases 100%%", want.cases, want.cases)) {
		t.Errorf("progress: %q", p)
	}
	if got := srv.schema.Load(); got != int64(want.cases) {
		t.Errorf("%d requests had response_format json_schema, want %d", got, want.cases)
	}
	if rep.Runs[0].Model != "fake-model" || rep.Runs[0].Run.Requests != want.cases || rep.Reductions.CurrentPageReduced != 0 {
		t.Errorf("run %+v, reductions %+v", rep.Runs[0].Run, rep.Reductions)
	}
	for _, s := range []string{"accuracy (per session", "outcome F1 (purchase)", "report.json"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, out.String())
		}
	}
	for _, f := range []string{"report.json", "report.html", "results-a.jsonl"} {
		if _, err := os.Stat(filepath.Join(cfg.Out, f)); err != nil {
			t.Error(err)
		}
	}
}

// volatile clears what legitimately differs between two runs of the same
// evaluation: when it started and how it went.
func volatile(r *eval.Report) eval.Report {
	c := *r
	c.StartedAt = ""
	c.Runs = append([]eval.RunReport(nil), r.Runs...)
	for i := range c.Runs {
		c.Runs[i].Run = eval.RunInfo{}
	}
	return c
}

// A run interrupted halfway (its context cancelled), whose results file
// then ends in a half-written line, resumes where it stopped and reports
// exactly what an uninterrupted run does.
func TestInterruptedRunResumes(t *testing.T) {
	t.Parallel()
	answers, data, _, want := setup(t, eval.FixtureOptions{Sessions: 30, Seed: 11})
	srv := newFakeOpenAI(t, answers)
	full, err := eval.Run(context.Background(), config(data, srv.URL, t.TempDir()), eval.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	checkExpected(t, full, want)

	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	half := int64(want.cases / 2)
	base := srv.requests.Load()
	srv.setHook(func(n int64, w http.ResponseWriter, _ *chatReq) bool {
		if n-base == half {
			cancel()
		}
		return false
	})
	_, err = eval.Run(ctx, config(data, srv.URL, out), eval.Deps{})
	if !errors.Is(err, eval.ErrInterrupted) || !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	results := filepath.Join(out, "results-a.jsonl")
	lines := countLines(t, results)
	// The header, the results before the interruption, and at most the 7
	// other requests of the 8 in flight that the server had answered
	// before the client saw the cancellation.
	if lines < 2 || lines > int(half)+8 {
		t.Fatalf("%d lines after the interruption at request %d", lines, half)
	}
	// A kill in the middle of a write leaves half a line.
	f, err := os.OpenFile(results, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"case":"x#2","status":"o`)
	f.Close()

	srv.setHook(nil)
	resumed, err := eval.Run(context.Background(), config(data, srv.URL, out), eval.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if r := resumed.Runs[0].Run; r.Resumed != lines-1 || r.Requests != want.cases-(lines-1) {
		t.Errorf("resumed %d, requests %d; want %d resumed and the rest sent", r.Resumed, r.Requests, lines-1)
	}
	if a, b := volatile(full), volatile(resumed); !reflect.DeepEqual(a, b) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		t.Errorf("resumed report differs:\n%s\n%s", ja, jb)
	}
	if n := countLines(t, results); n != want.cases+1 {
		t.Errorf("results file has %d lines, want a header and %d results", n, want.cases)
	}
	// The same directory with another configuration is refused.
	cfg := config(data, srv.URL, out)
	cfg.Gen.MaxTokens = 100
	if _, err := eval.Run(context.Background(), cfg, eval.Deps{}); err == nil || !strings.Contains(err.Error(), "--restart") {
		t.Errorf("another configuration on the same results: %v", err)
	}
	cfg.Restart = true
	if rep, err := eval.Run(context.Background(), cfg, eval.Deps{}); err != nil || rep.Runs[0].Run.Resumed != 0 {
		t.Errorf("restart: %v", err)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// 429 and 503 are retried after Retry-After (or the backoff when there is
// none), up to --retries; a target failing every case stops the run.
func TestRetries(t *testing.T) {
	t.Parallel()
	answers, data, _, want := setup(t, eval.FixtureOptions{Sessions: 6, Seed: 2})
	srv := newFakeOpenAI(t, answers)
	srv.setHook(func(n int64, w http.ResponseWriter, _ *chatReq) bool {
		switch {
		case n <= 3:
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
		case n == 4:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			return false
		}
		return true
	})
	cfg := config(data, srv.URL, t.TempDir())
	cfg.Run.Concurrency, cfg.Run.Retries = 1, 5
	sl := &noSleep{}
	rep, err := eval.Run(context.Background(), cfg, eval.Deps{Sleep: sl.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	checkExpected(t, rep, want)
	wantWaits := []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second, 4 * time.Second}
	if !reflect.DeepEqual(sl.waits, wantWaits) {
		t.Errorf("waits %v, want %v (Retry-After, then the backoff of a 4th attempt)", sl.waits, wantWaits)
	}
	if r := rep.Runs[0].Run; r.Retries != 4 || r.Requests != want.cases+4 {
		t.Errorf("requests %d retries %d", r.Requests, r.Retries)
	}

	// Out of retries: the case fails (and counts as wrong); ten in a row
	// stop the run, and the failed cases are sent again on resume.
	srv.setHook(func(n int64, w http.ResponseWriter, _ *chatReq) bool {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	cfg = config(data, srv.URL, t.TempDir())
	cfg.Run.Concurrency, cfg.Run.Retries = 1, 1
	_, err = eval.Run(context.Background(), cfg, eval.Deps{Sleep: (&noSleep{}).Sleep})
	if !errors.Is(err, eval.ErrTargetFailing) || !errors.Is(err, eval.ErrInterrupted) {
		t.Fatalf("a target failing every case: %v", err)
	}
	srv.setHook(nil)
	rep, err = eval.Run(context.Background(), cfg, eval.Deps{Sleep: (&noSleep{}).Sleep})
	if err != nil {
		t.Fatal(err)
	}
	checkExpected(t, rep, want)

	// A 400 is not retried: the case fails at once.
	var refused atomic.Int64
	srv.setHook(func(n int64, w http.ResponseWriter, _ *chatReq) bool {
		if n%2 == 0 {
			refused.Add(1)
			http.Error(w, `{"error":{"message":"no"}}`, http.StatusBadRequest)
			return true
		}
		return false
	})
	cfg = config(data, srv.URL, t.TempDir())
	cfg.Run.Concurrency = 1
	rep, err = eval.Run(context.Background(), cfg, eval.Deps{Sleep: (&noSleep{}).Sleep})
	if err != nil {
		t.Fatal(err)
	}
	if m, n := rep.Runs[0].Metrics, int(refused.Load()); n == 0 || m.Answers.Failed != n || rep.Runs[0].Run.Retries != 0 || m.Errors[eval.ErrFailed] != n {
		t.Errorf("400s: answers %+v, retries %d", m.Answers, rep.Runs[0].Run.Retries)
	}
}

// With a small context every request fits: no prompt over the budget the
// harness computes for it, pages reduced and counted, and cases that
// cannot fit are not sent.
func TestBudgetNeverExceeded(t *testing.T) {
	t.Parallel()
	_, data, _, _ := setup(t, eval.FixtureOptions{Sessions: 12, Seed: 4, PageBytes: 3000, LongPageEvery: 4, LongPageBytes: 40000})
	const ctxTokens, maxTokens = 4096, 256
	var over atomic.Int64
	var maxPage atomic.Int64
	srv := newFakeOpenAI(t, nil)
	srv.setHook(func(_ int64, w http.ResponseWriter, r *chatReq) bool {
		total := 0
		for _, m := range r.Messages {
			total += len(m.Content)
		}
		if budget := ctxTokens - maxTokens - 32 - 10*(2+4*(len(r.Messages)-2)/2); total > budget {
			over.Add(1)
		}
		storeMax(&maxPage, int64(len(r.Messages[len(r.Messages)-1].Content)))
		return false
	})
	cfg := config(data, srv.URL, t.TempDir())
	cfg.Budget.Ctx, cfg.Gen.MaxTokens, cfg.Budget.MaxPageBytes = ctxTokens, maxTokens, 2048
	rep, err := eval.Run(context.Background(), cfg, eval.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if over.Load() != 0 {
		t.Errorf("%d requests over the prompt budget", over.Load())
	}
	if maxPage.Load() > 2048 {
		t.Errorf("a page of %d bytes, over --max-page-bytes 2048", maxPage.Load())
	}
	red := rep.Reductions
	if red.CurrentPageReduced == 0 || red.HistoryPagesOmitted+red.HistoryPagesReduced == 0 || red.Share == nil {
		t.Errorf("nothing reduced: %+v", red)
	}
	// A body limit: the cases whose request could exceed it are not sent.
	cfg = config(data, srv.URL, t.TempDir())
	cfg.Budget.MaxBodyBytes = 64 << 10
	srv.maxBody.Store(0)
	rep, err = eval.Run(context.Background(), cfg, eval.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if m := rep.Runs[0].Metrics; m.Answers.NotSent == 0 || m.Answers.Answered == 0 || srv.maxBody.Load() > 64<<10 {
		t.Errorf("body limit 64 KiB: answers %+v, largest body %d", m.Answers, srv.maxBody.Load())
	}
	// No room at all: every case not sent, nothing sent.
	before := srv.requests.Load()
	cfg = config(data, srv.URL, t.TempDir())
	cfg.Budget.Ctx, cfg.Gen.MaxTokens = 700, 256
	rep, err = eval.Run(context.Background(), cfg, eval.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if m := rep.Runs[0].Metrics; m.Answers.NotSent != m.Cases || srv.requests.Load() != before || rep.Reductions.NotSent != m.Cases {
		t.Errorf("not sent %d of %d, %d requests", m.Answers.NotSent, m.Cases, srv.requests.Load()-before)
	}
}

// --compare runs a second target on the same cases and pairs them.
func TestCompare(t *testing.T) {
	t.Parallel()
	answers, data, ds, want := setup(t, eval.FixtureOptions{Sessions: 20, Seed: 9})
	a := newFakeOpenAI(t, answers)
	b := newFakeOpenAI(t, nil) // always terminates
	cfg := config(data, a.URL, t.TempDir())
	cfg.Compare = eval.TargetConfig{URL: b.URL, Mode: eval.ModeOpenAI, Format: "prompted", Model: "other"}
	var out strings.Builder
	rep, err := eval.Run(context.Background(), cfg, eval.Deps{Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	checkExpected(t, rep, want)
	var aOnly, bOnly, both int
	for i, c := range ds.Cases() {
		bRight := c.Truth.Type == nextaction.TypeTerminate
		switch aRight := want.correctByCase[i]; {
		case aRight && bRight:
			both++
		case aRight:
			aOnly++
		case bRight:
			bOnly++
		}
	}
	c := rep.Comparison
	if c == nil || c.AOnly != aOnly || c.BOnly != bOnly || c.BothCorrect != both || c.Cases != want.cases {
		t.Fatalf("comparison %+v, want a only %d, b only %d, both %d", c, aOnly, bOnly, both)
	}
	if m := eval.McNemarTest(aOnly, bOnly); c.McNemar.PValue != m.PValue || c.McNemar.Method != m.Method {
		t.Errorf("McNemar %+v, want %+v", c.McNemar, m)
	}
	d := *rep.Runs[0].Metrics.Accuracy.Value - *rep.Runs[1].Metrics.Accuracy.Value
	if v := c.AccuracyDifference.Value; v == nil || math.Abs(*v-d) > 1e-12 || c.AccuracyDifference.CI95 == nil {
		t.Errorf("difference %+v, want %v", c.AccuracyDifference, d)
	}
	if rep.Runs[1].Model != "other" || !strings.Contains(out.String(), "McNemar") {
		t.Errorf("run b %+v; summary:\n%s", rep.Runs[1], out.String())
	}
}

// Hostile data: a page nested too deep to parse is not sent (a server
// would refuse it too) and a 3 MiB page is reduced to the page limit; the
// run goes on and reports both.
func TestHostileData(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("<div>", 600) + `<a name="x">x</a>`
	huge := `<a name="buy_now">Buy</a>` + strings.Repeat("<p>review text that nobody reads</p>", 3<<20/37)
	lines := []string{
		`{"session":"h","step":1,"page":"<a name=\"x\">x</a>","action":{"type":"click","name":"x"}}`,
		`{"session":"h","step":2,"page":` + jsonString(deep) + `,"action":{"type":"click","name":"x"}}`,
		`{"session":"h","step":3,"page":` + jsonString(huge) + `,"action":{"type":"click","name":"buy_now"},"click_type":"purchase"}`,
	}
	data := filepath.Join(t.TempDir(), "h.jsonl")
	if err := os.WriteFile(data, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	var biggest atomic.Int64
	srv := newFakeOpenAI(t, nil)
	srv.setHook(func(_ int64, w http.ResponseWriter, r *chatReq) bool {
		for _, m := range r.Messages {
			storeMax(&biggest, int64(len(m.Content)))
		}
		return false
	})
	cfg := config(data, srv.URL, t.TempDir())
	cfg.Budget.MaxPageBytes = 64 << 10
	rep, err := eval.Run(context.Background(), cfg, eval.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	m := rep.Runs[0].Metrics
	if m.Cases != 2 || m.Answers.NotSent != 1 || m.Answers.Answered != 1 || srv.requests.Load() != 1 {
		t.Errorf("answers %+v, %d requests", m.Answers, srv.requests.Load())
	}
	if biggest.Load() > 64<<10 || rep.Reductions.CurrentPageReduced != 1 {
		t.Errorf("largest message %d bytes; reductions %+v", biggest.Load(), rep.Reductions)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
