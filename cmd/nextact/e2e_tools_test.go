package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// e2eTools are the tools of the tool-call tests: $defs with $ref, enums,
// a nested object, optional fields, an array, and a tool without
// parameters.
var e2eTools = []struct{ name, params string }{
	{"get_weather", `{"type":"object","properties":{"city":{"type":"string","maxLength":30},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["city","unit"],"additionalProperties":false}`},
	{"add_to_cart", `{"type":"object","$defs":{"item":{"type":"object","properties":{"sku":{"type":"string","pattern":"^[A-Z]{3}-[0-9]{4}$"},"qty":{"type":"integer","minimum":1,"maximum":9}},"required":["sku","qty"]}},"properties":{"items":{"type":"array","items":{"$ref":"#/$defs/item"},"minItems":1,"maxItems":3},"note":{"type":["string","null"],"maxLength":20}},"required":["items"]}`},
	{"checkout", ``},
}

func e2eToolsJSON() string {
	var parts []string
	for _, t := range e2eTools {
		p := ""
		if t.params != "" {
			p = `,"parameters":` + t.params
		}
		parts = append(parts, fmt.Sprintf(`{"type":"function","function":{"name":%q,"description":"Tool %s"%s}}`, t.name, t.name, p))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// toolValidators validate a call's arguments against its tool's schema
// with a real JSON Schema validator (a tool without parameters takes {}).
func toolValidators(t *testing.T) map[string]func([]byte) error {
	v := map[string]func([]byte) error{}
	for _, tool := range e2eTools {
		schema := tool.params
		if schema == "" {
			schema = `{"type":"object","maxProperties":0}`
		}
		v[tool.name] = nextactiontest.Validator(t, []byte(schema))
	}
	return v
}

type e2eToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type toolAnswer struct {
	content *string
	calls   []e2eToolCall
	finish  string
}

// postTools posts a chat request and reads its one choice, streamed or not.
func postTools(url, body string, stream bool) (toolAnswer, error) {
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return toolAnswer{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return toolAnswer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return toolAnswer{}, fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	if stream {
		return readToolStream(data)
	}
	var out struct {
		Choices []struct {
			Message struct {
				Content   *string       `json:"content"`
				ToolCalls []e2eToolCall `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &out); err != nil || len(out.Choices) != 1 {
		return toolAnswer{}, fmt.Errorf("bad response %s: %v", data, err)
	}
	c := out.Choices[0]
	return toolAnswer{content: c.Message.Content, calls: c.Message.ToolCalls, finish: c.FinishReason}, nil
}

// readToolStream assembles a streamed answer as the OpenAI SDKs do: a
// call's first delta carries its index, id, type and name; later ones
// append to its arguments.
func readToolStream(data []byte) (toolAnswer, error) {
	var a toolAnswer
	content, done := "", false
	for _, line := range strings.Split(string(data), "\n") {
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if payload == "[DONE]" {
			done = true
			continue
		}
		var ev struct {
			Choices []struct {
				Delta struct {
					Content   *string `json:"content"`
					ToolCalls []struct {
						Index    *int   `json:"index"`
						ID       string `json:"id"`
						Type     string `json:"type"`
						Function struct {
							Name      string  `json:"name"`
							Arguments *string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(payload), &ev); err != nil {
			return a, fmt.Errorf("event %q: %v", payload, err)
		}
		for _, ch := range ev.Choices {
			if ch.Delta.Content != nil {
				content += *ch.Delta.Content
			}
			for _, d := range ch.Delta.ToolCalls {
				switch {
				case d.Index == nil:
					return a, fmt.Errorf("tool call delta without index: %s", payload)
				case *d.Index == len(a.calls):
					if d.ID == "" || d.Type != "function" || d.Function.Name == "" || d.Function.Arguments == nil {
						return a, fmt.Errorf("a call's first delta lacks id, type, name or arguments: %s", payload)
					}
					var c e2eToolCall
					c.ID, c.Type, c.Function.Name = d.ID, d.Type, d.Function.Name
					a.calls = append(a.calls, c)
				case *d.Index >= len(a.calls):
					return a, fmt.Errorf("tool call delta for index %d before its first delta", *d.Index)
				}
				if d.Function.Arguments != nil {
					a.calls[*d.Index].Function.Arguments += *d.Function.Arguments
				}
			}
			if ch.FinishReason != nil {
				a.finish = *ch.FinishReason
			}
		}
	}
	if !done {
		return a, fmt.Errorf("stream without [DONE]")
	}
	if content != "" {
		a.content = &content
	}
	return a, nil
}

// checkCalls checks a forced answer: tool_calls only, finish_reason
// tool_calls, call ids, allowed names, arguments valid for the tool.
func checkCalls(a toolAnswer, allowed map[string]bool, validators map[string]func([]byte) error) error {
	if a.finish != "tool_calls" || len(a.calls) == 0 || a.content != nil && *a.content != "" {
		return fmt.Errorf("finish %q, %d calls, content %v: want tool_calls only", a.finish, len(a.calls), a.content)
	}
	ids := map[string]bool{}
	for _, c := range a.calls {
		if !strings.HasPrefix(c.ID, "call_") || ids[c.ID] || c.Type != "function" {
			return fmt.Errorf("call id %q type %q: want a fresh call_ id of type function", c.ID, c.Type)
		}
		ids[c.ID] = true
		if !allowed[c.Function.Name] {
			return fmt.Errorf("call of %q, not allowed", c.Function.Name)
		}
		if err := validators[c.Function.Name]([]byte(c.Function.Arguments)); err != nil {
			return fmt.Errorf("%s arguments %s do not validate: %v", c.Function.Name, c.Function.Arguments, err)
		}
	}
	return nil
}

// Forced tool calls (tool_choice required and named) on the real engine,
// in each chat format, at temperature 1.0 with seeds, streamed and not:
// every answer is tool calls whose arguments a real JSON Schema validator
// accepts for the tool called, within max_tokens.
func TestToolCallsForcedOnRealEngine(t *testing.T) {
	validators := toolValidators(t)
	all := map[string]bool{"get_weather": true, "add_to_cart": true, "checkout": true}
	for _, format := range []string{"llama3", "chatml", "mistral"} {
		t.Run(format, func(t *testing.T) {
			c := testConfig()
			c.ChatFormat, c.Ctx = format, 4096
			ts := startServer(t, c)
			type job struct {
				name, choice string
				allowed      map[string]bool
				seed         int
				stream       bool
			}
			var jobs []job
			for seed := 1; seed <= 3; seed++ {
				jobs = append(jobs,
					job{"required", `"required"`, all, seed, seed == 3},
					job{"named add_to_cart", `{"type":"function","function":{"name":"add_to_cart"}}`, map[string]bool{"add_to_cart": true}, seed, seed == 2},
				)
			}
			jobs = append(jobs, job{"named checkout", `{"type":"function","function":{"name":"checkout"}}`, map[string]bool{"checkout": true}, 4, false})
			var (
				wg         sync.WaitGroup
				mu         sync.Mutex
				callCounts = map[int]int{}
			)
			errs := make([]error, len(jobs))
			for i, j := range jobs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Buy two shirts and check the weather in Oslo."}],"tools":%s,"tool_choice":%s,"temperature":1.0,"seed":%d,"max_tokens":%d,"stream":%v}`,
						ts.modelID(), e2eToolsJSON(), j.choice, j.seed, 120+40*j.seed, j.stream)
					a, err := postTools(ts.URL, body, j.stream)
					if err == nil {
						err = checkCalls(a, j.allowed, validators)
					}
					mu.Lock()
					callCounts[len(a.calls)]++
					mu.Unlock()
					if err != nil {
						errs[i] = fmt.Errorf("%s seed %d stream %v: %w", j.name, j.seed, j.stream, err)
					}
				}()
			}
			wg.Wait()
			t.Logf("calls per forced answer: %v", callCounts)
			for _, err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// A conversation with an assistant's tool calls and the tools' results
// renders and answers, in each format; with parallel_tool_calls false a
// Mistral forced answer holds one call; tool_choice none and auto answer.
func TestToolHistoryOnRealEngine(t *testing.T) {
	validators := toolValidators(t)
	history := `[{"role":"system","content":"You shop."},{"role":"user","content":"Weather in Oslo?"},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\",\"unit\":\"celsius\"}"}}]},` +
		`{"role":"tool","tool_call_id":"call_1","content":"{\"temp\": 3}"}]`
	for _, format := range []string{"llama3", "chatml", "mistral"} {
		t.Run(format, func(t *testing.T) {
			c := testConfig()
			c.ChatFormat, c.Ctx = format, 4096
			ts := startServer(t, c)
			for _, choice := range []string{`"auto"`, `"none"`, `"required"`} {
				body := fmt.Sprintf(`{"model":%q,"messages":%s,"tools":%s,"tool_choice":%s,"parallel_tool_calls":false,"temperature":0,"max_tokens":120}`,
					ts.modelID(), history, e2eToolsJSON(), choice)
				a, err := postTools(ts.URL, body, false)
				if err != nil {
					t.Fatalf("%s: %v", choice, err)
				}
				switch choice {
				case `"required"`:
					if err := checkCalls(a, map[string]bool{"get_weather": true, "add_to_cart": true, "checkout": true}, validators); err != nil || len(a.calls) != 1 {
						t.Errorf("required: %d calls, %v", len(a.calls), err)
					}
				case `"none"`:
					if a.content == nil || len(a.calls) > 0 || a.finish == "tool_calls" {
						t.Errorf("none: %+v: want content", a)
					}
				default:
					if (a.finish == "tool_calls") != (len(a.calls) > 0) || a.content == nil && len(a.calls) == 0 {
						t.Errorf("auto: %+v", a)
					}
				}
			}
		})
	}
}

// Tool requests the server must refuse, each with a 400 in OpenAI's
// error shape naming the field.
func TestToolRequestErrors(t *testing.T) {
	ts := startServer(t, testConfig())
	msg := `[{"role":"user","content":"hi"}]`
	tool := func(name, params string) string {
		return fmt.Sprintf(`{"type":"function","function":{"name":%q,"parameters":%s}}`, name, params)
	}
	ok := tool("f", `{"type":"object"}`)
	many := make([]string, 129)
	for i := range many {
		many[i] = tool(fmt.Sprintf("f%d", i), `{}`)
	}
	call := func(id, name, args string) string {
		return fmt.Sprintf(`[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":%s,"type":"function","function":{"name":%q,"arguments":%s}}]},{"role":"tool","tool_call_id":"c1","content":"r"}]`, id, name, args)
	}
	cases := []struct{ name, messages, extra, param string }{
		{"unknown type", msg, `"tools":[{"type":"retrieval"}]`, "tools[0].type"},
		{"bad name", msg, `"tools":[` + tool("a b", `{}`) + `]`, "tools[0].function.name"},
		{"long name", msg, `"tools":[` + tool(strings.Repeat("a", 65), `{}`) + `]`, "tools[0].function.name"},
		{"duplicate name", msg, `"tools":[` + ok + `,` + ok + `]`, "tools[1].function.name"},
		{"too many tools", msg, `"tools":[` + strings.Join(many, ",") + `]`, "tools"},
		{"schema not an object", msg, `"tools":[` + tool("f", `"x"`) + `]`, "tools[0].function.parameters"},
		{"schema of a string", msg, `"tools":[` + tool("f", `{"type":"string"}`) + `]`, "tools[0].function.parameters"},
		{"max_tokens too few for a call", msg, `"tools":[` + tool("f", `{"type":"object","properties":{"a":{"type":"string","minLength":20}},"required":["a"]}`) + `],"tool_choice":"required","max_tokens":3`, "max_tokens"},
		{"schema unsupported", msg, `"tools":[` + ok + `,` + tool("g", `{"type":"object","if":{}}`) + `]`, "tools[1].function.parameters"},
		{"schema too large", msg, `"tools":[` + tool("f", `{"type":"array","items":{"type":"array","items":{"type":"array","items":{"type":"string","maxLength":1000},"maxItems":1000},"maxItems":1000},"maxItems":1000}`) + `]`, "tools[0].function.parameters"},
		{"bad choice", msg, `"tools":[` + ok + `],"tool_choice":"always"`, "tool_choice"},
		{"unknown named", msg, `"tools":[` + ok + `],"tool_choice":{"type":"function","function":{"name":"g"}}`, "tool_choice.function.name"},
		{"required without tools", msg, `"tool_choice":"required"`, "tool_choice"},
		{"response_format with tools", msg, `"tools":[` + ok + `],"response_format":{"type":"json_object"}`, "response_format"},
		{"parallel not bool", msg, `"tools":[` + ok + `],"parallel_tool_calls":"yes"`, "parallel_tool_calls"},
		{"arguments not JSON", call(`"c1"`, "f", `"{bad"`), "", "messages[1].tool_calls[0].function.arguments"},
		{"arguments not an object", call(`"c1"`, "f", `"[1]"`), "", "messages[1].tool_calls[0].function.arguments"},
		{"arguments too deep", call(`"c1"`, "f", `"`+strings.Repeat(`{\"a\":`, 600)+`1`+strings.Repeat(`}`, 600)+`"`), "", "messages[1].tool_calls[0].function.arguments"},
		{"call without id", call(`null`, "f", `"{}"`), "", "messages[1].tool_calls[0].id"},
		{"call id too long", call(`"`+strings.Repeat("x", 200)+`"`, "f", `"{}"`), "", "messages[1].tool_calls[0].id"},
		{"call name bad", call(`"c1"`, "f<|eot_id|>", `"{}"`), "", "messages[1].tool_calls[0].function.name"},
		{"tool without id", `[{"role":"user","content":"hi"},{"role":"tool","content":"r"}]`, "", "messages[1].tool_call_id"},
		{"calls on a user message", `[{"role":"user","content":"hi","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]`, "", "messages[0].tool_calls"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"model":%q,"messages":%s`, ts.modelID(), c.messages)
			if !strings.Contains(c.extra, "max_tokens") {
				body += `,"max_tokens":4`
			}
			if c.extra != "" {
				body += "," + c.extra
			}
			body += "}"
			resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json", bytes.NewReader([]byte(body)))
			if err != nil {
				t.Fatal(err)
			}
			out := readJSON(t, c.name, resp)
			e, _ := out["error"].(map[string]any)
			if resp.StatusCode != http.StatusBadRequest || e == nil || e["param"] != c.param || e["type"] != "invalid_request_error" {
				t.Errorf("status %d, body %v: want a 400 naming %s", resp.StatusCode, out, c.param)
			}
		})
	}
	// The server still serves.
	if a, err := postTools(ts.URL, fmt.Sprintf(`{"model":%q,"messages":%s,"max_tokens":4}`, ts.modelID(), msg), false); err != nil || a.content == nil {
		t.Fatalf("after the refusals: %+v %v", a, err)
	}
}

// Forced answers in the formats that allow several calls (ChatML's
// <tool_call> blocks, Mistral's array) hold several calls for some seeds
// (ChatML; the generated model always closes Mistral's array after one)
// and, with parallel_tool_calls false, exactly one; every call validates.
func TestToolCallsParallelOnRealEngine(t *testing.T) {
	validators := toolValidators(t)
	all := map[string]bool{"get_weather": true, "add_to_cart": true, "checkout": true}
	for _, format := range []string{"chatml", "mistral"} {
		t.Run(format, func(t *testing.T) {
			c := testConfig()
			c.ChatFormat, c.Ctx = format, 4096
			ts := startServer(t, c)
			for _, parallel := range []bool{true, false} {
				counts := map[int]int{}
				for seed := 1; seed <= 30; seed++ {
					body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Buy."}],"tools":%s,"tool_choice":"required","parallel_tool_calls":%v,"temperature":1.5,"seed":%d,"max_tokens":300}`,
						ts.modelID(), e2eToolsJSON(), parallel, seed)
					a, err := postTools(ts.URL, body, false)
					if err == nil {
						err = checkCalls(a, all, validators)
					}
					if err != nil {
						t.Fatalf("parallel %v seed %d: %v", parallel, seed, err)
					}
					counts[len(a.calls)]++
				}
				t.Logf("parallel_tool_calls %v: calls per answer %v", parallel, counts)
				// A tool whose 4 calls would be over the grammar's node
				// limit (one is not) gets one call, not a 400.
				big := `{"type":"object","properties":{"m":{"type":"array","maxItems":48,"items":{"type":"array","maxItems":48,"items":{"type":"number"}}}},"required":["m"]}`
				body := fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Buy."}],"tools":[{"type":"function","function":{"name":"grid","parameters":%s}}],"tool_choice":"required","parallel_tool_calls":%v,"seed":1,"max_tokens":60}`,
					ts.modelID(), big, parallel)
				a, err := postTools(ts.URL, body, false)
				if err == nil {
					err = checkCalls(a, map[string]bool{"grid": true}, map[string]func([]byte) error{"grid": nextactiontest.Validator(t, []byte(big))})
				}
				if err != nil || len(a.calls) != 1 {
					t.Errorf("a tool too large for 4 calls: %d calls, %v", len(a.calls), err)
				}
				// The generated model never continues Mistral's array at
				// these seeds (it closes it): there only the bound is
				// checked.
				several := len(counts) > 1 || counts[1] == 0
				if several && !parallel || !several && parallel && format == "chatml" {
					t.Errorf("parallel_tool_calls %v: calls per answer %v", parallel, counts)
				}
			}
		})
	}
}
