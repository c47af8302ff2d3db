package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sourcegraph/conc/pool"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/client"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// 1,000 generated pages through the embedded random-weight model, at
// temperatures 0, 0.7 and 1.5 and in both prompt formats (each page gets
// one of the six combinations, in turn): every answer parses,
// has a legal type, carries a name from that page (input names only for
// type_and_submit, never a named container: the pages name containers at
// every depth, as the paper's pages do) and round-trips through the typed
// client.
func TestNextActionAlwaysValidOnGeneratedPages(t *testing.T) {
	c := testConfig()
	c.Slots = 16
	c.Queue = 256
	c.StepTokens = 512
	c.Ctx = 2048
	ts := startServer(t, c)
	cl := client.New(ts.URL)
	rng := rand.New(rand.NewPCG(42, 7))
	type job struct {
		page                          string
		clickable, inputs, containers map[string]bool
		temp                          float64
		format                        string
		seed                          uint64
	}
	var jobs []job
	withContainers := 0
	for i := range actionPages {
		html, cs, ins, conts := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{MaxClickables: 12, MaxInputs: 3, ApproxBytes: -1})
		if len(conts) > 0 {
			withContainers++
		}
		jobs = append(jobs, job{
			page: html, clickable: set(cs), inputs: set(ins), containers: set(conts), seed: uint64(i),
			temp: []float64{0, 0.7, 1.5}[i%3], format: []string{"prompted", "finetuned"}[(i/3)%2],
		})
	}
	if withContainers < actionPages/2 {
		t.Fatalf("only %d of %d pages name a container", withContainers, actionPages)
	}
	var types [3]atomic.Int64
	p := pool.New().WithErrors().WithMaxGoroutines(16)
	for _, j := range jobs {
		p.Go(func() error {
			res, err := cl.NextAction(context.Background(), nextaction.NextActionRequest{
				Model: ts.modelID(), Page: j.page, Format: j.format, Temperature: &j.temp, Seed: &j.seed, MaxTokens: 96,
			})
			if err != nil {
				return err
			}
			a := res.Action
			if j.containers[a.Name] {
				return fmt.Errorf("%s on %q, a named container", a.Type, a.Name)
			}
			switch a.Type {
			case nextaction.TypeClick:
				types[0].Add(1)
				if !j.clickable[a.Name] {
					return fmt.Errorf("click on %q, not a clickable of the page", a.Name)
				}
			case nextaction.TypeTypeAndSubmit:
				types[1].Add(1)
				if !j.inputs[a.Name] || a.Text == "" || len(a.Text) > 40 {
					return fmt.Errorf("type_and_submit %q into %q", a.Text, a.Name)
				}
			case nextaction.TypeTerminate:
				types[2].Add(1)
				if a.Name != "" || a.Text != "" {
					return fmt.Errorf("terminate with fields: %+v", a)
				}
			default:
				return fmt.Errorf("illegal type %q", a.Type)
			}
			if res.Usage.CompletionTokens > 96 || res.Usage.TotalTokens != res.Usage.PromptTokens+res.Usage.CompletionTokens {
				return fmt.Errorf("usage %+v", res.Usage)
			}
			return nil
		})
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("click %d, type_and_submit %d, terminate %d", types[0].Load(), types[1].Load(), types[2].Load())
	if types[0].Load() == 0 || types[1].Load() == 0 {
		t.Fatal("the sampler never chose some action types: the mask is too narrow")
	}
}

// actionPages is the number of generated pages of the validity test.
var actionPages = 1000

func set(xs []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// Bad next-action input gets a clear error naming the field; the server
// keeps serving.
func TestNextActionBadInput(t *testing.T) {
	c := testConfig()
	c.MaxPageBytes = 4096
	ts := startServer(t, c)
	cl := client.New(ts.URL)
	page := `<button name="buy_now">Buy</button><input name="search_input"/>`
	cases := []struct {
		name   string
		req    nextaction.NextActionRequest
		status int
		param  string
	}{
		{"page over the limit", nextaction.NextActionRequest{Page: "<p>" + strings.Repeat("x", 5000) + "</p>"}, 413, ""},
		{"unknown format", nextaction.NextActionRequest{Page: page, Format: "freestyle"}, 400, "format"},
		{"bad history action type", nextaction.NextActionRequest{Page: page, History: []nextaction.Step{{Action: nextaction.Action{Type: "click", Name: "x"}}, {Action: nextaction.Action{Type: "jump"}}}}, 400, "history[1].action.type"},
		{"missing page", nextaction.NextActionRequest{}, 400, "page"},
		{"max_tokens too small", nextaction.NextActionRequest{Page: page, MaxTokens: 5}, 400, "max_tokens"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Model = ts.modelID()
			_, err := cl.NextAction(context.Background(), tc.req)
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.Status != tc.status {
				t.Fatalf("got %v, want status %d", err, tc.status)
			}
			if tc.param != "" && (ae.Err.Param == nil || *ae.Err.Param != tc.param) {
				t.Fatalf("param %v, want %s (%s)", ae.Err.Param, tc.param, ae.Err.Message)
			}
		})
	}
	// A page with no named elements allows only terminate.
	res, err := cl.NextAction(context.Background(), nextaction.NextActionRequest{Model: ts.modelID(), Page: "<p>nothing to click</p>", Format: "finetuned"})
	if err != nil || res.Action.Type != nextaction.TypeTerminate {
		t.Fatalf("empty page: %+v %v", res, err)
	}
}

// json_schema and json_object outputs always parse and match, through the
// OpenAI endpoint with the real engine, even when max_tokens cuts them short.
func TestStructuredOutputs(t *testing.T) {
	ts := startServer(t, testConfig())
	schema := `{"type":"object","properties":{"type":{"enum":["click","terminate"]},"name":{"type":"string","maxLength":20},"n":{"type":"integer"}},"required":["type","name","n"],"additionalProperties":false}`
	for i := range 30 {
		for _, rf := range []string{`{"type":"json_object"}`, `{"type":"json_schema","json_schema":{"name":"act","schema":` + schema + `}}`} {
			body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"act %d"}],"temperature":1.2,"seed":%d,"max_tokens":%d,"response_format":%s}`,
				ts.modelID(), i, i, 40+i*3, rf)
			code, _, out := post(t, ts.URL+"/v1/chat/completions", body)
			if code != 200 {
				t.Fatalf("status %d: %v", code, out)
			}
			text, _ := chatText(t, out)
			var m map[string]any
			if err := json.Unmarshal([]byte(text), &m); err != nil {
				t.Fatalf("%s: output %q does not parse: %v", rf, text, err)
			}
			if strings.Contains(rf, "json_schema") {
				typ, _ := m["type"].(string)
				name, _ := m["name"].(string)
				n, isNum := m["n"].(float64)
				if (typ != "click" && typ != "terminate") || len(name) > 20 || !isNum || n != float64(int64(n)) || len(m) != 3 {
					t.Fatalf("output %q does not match the schema", text)
				}
			}
		}
	}
	code, _, out := post(t, ts.URL+"/v1/chat/completions", fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"type":"string","pattern":"^a+$"}}}}`, ts.modelID()))
	if e, _ := out["error"].(map[string]any); code != 400 || !strings.Contains(fmt.Sprint(e["message"]), "pattern") {
		t.Fatalf("unsupported schema feature: %d %v", code, out)
	}
}
