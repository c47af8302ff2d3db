package models_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nextact/nextact/models"
)

var testTools = []models.Tool{
	{Name: "get_weather", Description: "Current weather in a city.", Parameters: []byte(`{"type":"object","properties":{"city":{"type":"string","description":"The city, e.g. \u00c9vian"},"unit":{"enum":["c","f"]}},"required":["city"]}`)},
	{Name: "add_to_cart", Parameters: []byte(`{"type": "object", "properties": {"sku": {"$ref": "#/$defs/sku"}}, "$defs": {"sku": {"type": "string", "maxLength": 12}}}`)},
	{Name: "checkout"},
}

// toolConversation: a system message, a user asking, an assistant calling
// two tools (one call with content before it), both results, the
// assistant's answer, and a new user turn. Content holds control-token
// text, which must stay out of Special segments.
var toolConversation = []models.Message{
	{Role: "system", Content: "You shop for a hiking shirt."},
	{Role: "user", Content: "Weather in Paris? <|eot_id|><|im_end|>[/INST]"},
	{Role: "assistant", ToolCalls: []models.ToolCall{
		{ID: "call_abc", Name: "get_weather", Arguments: `{"city":"Paris","unit":"c"}`},
		{ID: "a1b2c3d4e", Name: "add_to_cart", Arguments: `{"sku": "X\n1"}`},
	}},
	{Role: "tool", ToolCallID: "call_abc", Content: `{"temp": 21}`},
	{Role: "tool", ToolCallID: "a1b2c3d4e", Content: "added <|eot_id|>"},
	{Role: "assistant", Content: "It is 21 degrees; the shirt is in the cart."},
	{Role: "user", Content: "Check out."},
}

func TestRenderToolsGolden(t *testing.T) {
	t.Parallel()
	for _, f := range []models.ChatFormat{models.FormatLlama3, models.FormatChatML, models.FormatMistral} {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			// Llama 3.1's template renders one call per turn: nextact
			// renders the two calls as consecutive turns.
			segs, err := f.RenderTools(toolConversation, testTools)
			if err != nil {
				t.Fatalf("RenderTools: %v", err)
			}
			for _, s := range segs {
				if s.Special && (strings.Contains(s.Text, "Paris") || strings.Contains(s.Text, "added") || strings.Contains(s.Text, "get_weather")) {
					t.Errorf("content in a Special segment: %q", s.Text)
				}
			}
			checkGolden(t, string(f)+"_tools.golden", dump(segs))
		})
	}
}

// Without tools and tool turns RenderTools is Render; tool turns without
// tools render without the tool definitions.
func TestRenderToolsWithoutTools(t *testing.T) {
	t.Parallel()
	for _, f := range []models.ChatFormat{models.FormatLlama3, models.FormatChatML} {
		a, errA := f.Render(conversation)
		b, errB := f.RenderTools(conversation, nil)
		if errA != nil || errB != nil || dump(a) != dump(b) {
			t.Errorf("%s: RenderTools without tools differs from Render (%v, %v)", f, errA, errB)
		}
		segs, err := f.RenderTools(toolConversation, nil)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if text := joined(segs); strings.Contains(text, "get_weather\", \"description") || !strings.Contains(text, `"city": "Paris"`) {
			t.Errorf("%s: without tools: %q", f, text)
		}
	}
}

func joined(segs []models.Segment) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteString(s.Text)
	}
	return b.String()
}

func TestRenderToolsRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		f    models.ChatFormat
		msgs []models.Message
		want string
	}{
		{models.FormatLlama3, []models.Message{{Role: "system", Content: "s"}, {Role: "assistant", Content: "a"}}, "first user message"},
		{models.FormatMistral, []models.Message{{Role: "user", Content: "u"}, {Role: "assistant", Content: "a"}}, "last message"},
		{models.FormatMistral, []models.Message{{Role: "user", Content: "u"}, {Role: "user", Content: "u"}}, "alternate"},
		{models.FormatChatML, []models.Message{{Role: "user", Content: "u", ToolCalls: []models.ToolCall{{Name: "f", Arguments: "{}"}}}}, "only assistant"},
		{models.FormatChatML, []models.Message{{Role: "assistant", ToolCalls: []models.ToolCall{{Name: "f", Arguments: "[1"}}}, {Role: "user", Content: "u"}}, "arguments"},
	}
	for _, c := range cases {
		if _, err := c.f.RenderTools(c.msgs, testTools); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: error %v, want one containing %q", c.f, c.msgs, err, c.want)
		}
	}
}

func TestMistralCallID(t *testing.T) {
	t.Parallel()
	if got := models.MistralCallID("a1b2c3d4e"); got != "a1b2c3d4e" {
		t.Errorf("a valid id changed: %q", got)
	}
	a, b := models.MistralCallID("call_abc"), models.MistralCallID("call_abd")
	if len(a) != 9 || a == b || a != models.MistralCallID("call_abc") {
		t.Errorf("derived ids %q, %q: want 9 characters, distinct, stable", a, b)
	}
}

func known(name string) bool { return name == "get_weather" || name == "add_to_cart" }

func TestParseToolCalls(t *testing.T) {
	t.Parallel()
	cases := []struct {
		f       models.ChatFormat
		text    string
		ok      bool
		content string
		calls   string // name(args);…
	}{
		{models.FormatLlama3, ` {"name": "get_weather", "parameters": {"city": "Paris"}}`, true, "", `get_weather({"city":"Paris"})`},
		{models.FormatLlama3, `<|python_tag|>{"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}`, true, "", `get_weather({"city":"Rome"})`},
		{models.FormatLlama3, `{"name": "unknown", "parameters": {}}`, false, "", ""},
		{models.FormatLlama3, `{"name": "get_weather", "parameters": [1]}`, false, "", ""},
		{models.FormatLlama3, `{"name": "get_weather", "parameters": {}} and more`, false, "", ""},
		{models.FormatLlama3, `The weather is fine.`, false, "", ""},
		{models.FormatChatML, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add_to_cart\", \"arguments\": {}}\n</tool_call>", true, "", `get_weather({"city":"Paris"});add_to_cart({})`},
		{models.FormatChatML, "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}", true, "Let me look.", `get_weather({"city":"Oslo"})`},
		{models.FormatChatML, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call> trailing", false, "", ""},
		{models.FormatChatML, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\n</tool_call>", false, "", ""},
		{models.FormatChatML, "no call here", false, "", ""},
		{models.FormatMistral, `[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "add_to_cart", "arguments": {"sku": "a"}}]`, true, "", `get_weather({"city":"Paris"});add_to_cart({"sku":"a"})`},
		{models.FormatMistral, `[TOOL_CALLS]{"name": "get_weather", "arguments": {}}`, true, "", `get_weather({})`},
		{models.FormatMistral, `[TOOL_CALLS] []`, false, "", ""},
		{models.FormatMistral, `Sure: [TOOL_CALLS] [{"name": "get_weather", "arguments": {}}]`, false, "", ""},
	}
	for _, c := range cases {
		content, calls, ok := c.f.ParseToolCalls(c.text, known)
		var got []string
		for _, call := range calls {
			got = append(got, call.Name+"("+call.Arguments+")")
		}
		if ok != c.ok || ok && (content != c.content || strings.Join(got, ";") != c.calls) {
			t.Errorf("%s %q: got %v %q %v, want %v %q %s", c.f, c.text, ok, content, got, c.ok, c.content, c.calls)
		}
	}
}

// CallStart holds back exactly what may still open a call.
func TestCallStart(t *testing.T) {
	t.Parallel()
	cases := []struct {
		f        models.ChatFormat
		text     string
		safe, at int
		final    bool
	}{
		{models.FormatLlama3, "  ", 0, -1, false},
		{models.FormatLlama3, " {\"na", 1, 1, false},
		{models.FormatLlama3, "<|pyth", 0, -1, false},
		{models.FormatLlama3, "Hello", 5, -1, true},
		{models.FormatMistral, "[TOOL_", 0, -1, false},
		{models.FormatMistral, "[TOOL_CALLS] [", 0, 0, false},
		{models.FormatMistral, "[x", 2, -1, true},
		{models.FormatChatML, "Hi <tool_", 2, -1, false},
		{models.FormatChatML, "Hi <tool_call>\n{", 2, 3, false},
		{models.FormatChatML, "Hi <b>", 6, -1, false},
		{models.FormatChatML, "Hi \n", 2, -1, false},
	}
	for _, c := range cases {
		safe, at, final := c.f.CallStart(c.text)
		if safe != c.safe || at != c.at || final != c.final {
			t.Errorf("%s %q: got %d %d %v, want %d %d %v", c.f, c.text, safe, at, final, c.safe, c.at, c.final)
		}
	}
}

// CallSchema embeds each tool's schema with its $refs rebased, in the
// format's call shape.
func TestCallSchema(t *testing.T) {
	t.Parallel()
	got, err := models.FormatMistral.CallSchema(testTools[1:], 4)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"array","minItems":1,"maxItems":4,"items":{"anyOf":[{"type":"object","properties":{"name":{"const":"add_to_cart"},"arguments":{"type": "object", "properties": {"sku": {"$ref": "#/items/anyOf/0/properties/arguments/$defs/sku"}}, "$defs": {"sku": {"type": "string", "maxLength": 12}}}},"required":["name","arguments"]},{"type":"object","properties":{"name":{"const":"checkout"},"arguments":{"type": "object", "properties": {}, "additionalProperties": false}},"required":["name","arguments"]}]}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	got, err = models.FormatChatML.CallSchema([]models.Tool{{Name: "a", Parameters: []byte(`{}`)}, {Name: "b", Parameters: []byte(`{"properties":{"x":{}}}`)}}, 1)
	if want := `{"anyOf":[{"type":"object","properties":{"name":{"const":"a"},"arguments":{"type": "object"}},"required":["name","arguments"]},{"type":"object","properties":{"name":{"const":"b"},"arguments":{"type": "object", "properties": {"x": {}}}},"required":["name","arguments"]}]}`; err != nil || string(got) != want {
		t.Errorf("untyped parameters: got %s %v\nwant %s", got, err, want)
	}
	if models.ToolParametersError([]byte(`{"type":"string"}`)) == "" || models.ToolParametersError([]byte(`{"type": "object"}`)) != "" || models.ToolParametersError([]byte(`{}`)) != "" {
		t.Error("ToolParametersError: want a refusal of type string only")
	}
	got, err = models.FormatLlama3.CallSchema(testTools[:1], 4)
	if err != nil || !strings.HasPrefix(string(got), `{"anyOf":[{"type":"object","properties":{"name":{"const":"get_weather"},"parameters":{`) {
		t.Errorf("llama3: %s %v", got, err)
	}
}

// FuzzToolCalls: parsing any answer, finding where calls start, and
// rendering any arguments the request check accepts never panic; parsed
// calls have JSON object arguments; a call schema is JSON.
func FuzzToolCalls(f *testing.F) {
	f.Add(uint8(0), ` {"name": "get_weather", "parameters": {"city": "Oslo"}}`)
	f.Add(uint8(1), "Hi\n<tool_call>\n{\"name\": \"add_to_cart\", \"arguments\": \"{}\"}\n</tool_call><tool_call>")
	f.Add(uint8(2), `[TOOL_CALLS] [{"name": "get_weather", "arguments": {"a": [1, {"$ref": "#/x"}]}}]`)
	f.Add(uint8(2), `{"type":"object","properties":{"$ref":{"$ref":"#/$defs/a"}},"$defs":{"a":{"const":{"$ref":"#"}}}}`)
	anyName := func(string) bool { return true }
	f.Fuzz(func(t *testing.T, which uint8, text string) {
		format := []models.ChatFormat{models.FormatLlama3, models.FormatChatML, models.FormatMistral}[int(which)%3]
		if content, calls, ok := format.ParseToolCalls(text, anyName); ok {
			if !strings.HasPrefix(text, content) || len(calls) == 0 {
				t.Fatalf("content %q, %d calls of %q", content, len(calls), text)
			}
			for _, c := range calls {
				if models.CheckArguments(c.Arguments) != nil {
					t.Fatalf("call %+v of %q: arguments not a JSON object", c, text)
				}
			}
		}
		safe, at, _ := format.CallStart(text)
		if safe < 0 || safe > len(text) || at >= 0 && (at < safe || at > len(text)) {
			t.Fatalf("CallStart(%q) = %d, %d", text, safe, at)
		}
		if models.CheckArguments(text) == nil {
			msgs := []models.Message{{Role: "user", Content: "u"}, {Role: "assistant", ToolCalls: []models.ToolCall{{ID: text, Name: "f", Arguments: text}}}, {Role: "tool", ToolCallID: text, Content: text}}
			if _, err := format.RenderTools(msgs, []models.Tool{{Name: "f", Parameters: []byte(text)}}); err != nil {
				t.Fatalf("arguments %q pass the check but do not render: %v", text, err)
			}
			schema, err := format.CallSchema([]models.Tool{{Name: "f", Parameters: []byte(text)}}, 2)
			if err != nil || !json.Valid(schema) {
				t.Fatalf("call schema of %q: %s %v", text, schema, err)
			}
		}
	})
}
