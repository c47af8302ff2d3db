package nextaction_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nextact/nextact/nextaction"
)

func mustParse(t *testing.T, html string) *nextaction.Page {
	t.Helper()
	p, err := nextaction.ParsePage(html)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestActionValidate(t *testing.T) {
	t.Parallel()
	page := mustParse(t, `<a name="shirt.view">View</a><button name="buy_now">Buy</button><input name="search_input"><textarea name="review"></textarea>`)
	empty := mustParse(t, `<p>no elements</p>`)
	tests := []struct {
		name   string
		page   *nextaction.Page
		action nextaction.Action
		field  string // "" = valid
		msg    string // substring of the message
	}{
		{"click", page, nextaction.Action{Type: "click", Name: "shirt.view"}, "", ""},
		{"purchase", page, nextaction.Action{Type: "click", Name: "buy_now"}, "", ""},
		{"type", page, nextaction.Action{Type: "type_and_submit", Name: "search_input", Text: "hiking shirt"}, "", ""},
		{"textarea", page, nextaction.Action{Type: "type_and_submit", Name: "review", Text: strings.Repeat("x", 20)}, "", ""},
		{"terminate", page, nextaction.Action{Type: "terminate"}, "", ""},
		{"terminate on empty page", empty, nextaction.Action{Type: "terminate"}, "", ""},
		{"click on empty page", empty, nextaction.Action{Type: "click", Name: "shirt.view"}, "name", "not the name of a clickable"},
		{"no type", page, nextaction.Action{Name: "shirt.view"}, "type", "required"},
		{"unknown type", page, nextaction.Action{Type: "jump"}, "type", `unknown action type "jump"`},
		{"type case matters", page, nextaction.Action{Type: "Click", Name: "shirt.view"}, "type", "unknown"},
		{"click without name", page, nextaction.Action{Type: "click"}, "name", "required"},
		{"click unknown name", page, nextaction.Action{Type: "click", Name: "nope"}, "name", `"nope" is not the name of a clickable`},
		{"click on input", page, nextaction.Action{Type: "click", Name: "search_input"}, "name", "clickable"},
		{"click with text", page, nextaction.Action{Type: "click", Name: "buy_now", Text: "x"}, "text", "empty"},
		{"type into clickable", page, nextaction.Action{Type: "type_and_submit", Name: "buy_now", Text: "x"}, "name", "not the name of an input"},
		{"type without text", page, nextaction.Action{Type: "type_and_submit", Name: "search_input"}, "text", "required"},
		{"type without name", page, nextaction.Action{Type: "type_and_submit", Text: "x"}, "name", "required"},
		{"text too long", page, nextaction.Action{Type: "type_and_submit", Name: "search_input", Text: strings.Repeat("x", 21)}, "text", "more than the limit of 20"},
		{"text invalid utf8", page, nextaction.Action{Type: "type_and_submit", Name: "search_input", Text: "a\xffb"}, "text", "UTF-8"},
		{"terminate with name", page, nextaction.Action{Type: "terminate", Name: "buy_now"}, "name", "empty"},
		{"terminate with text", page, nextaction.Action{Type: "terminate", Text: "bye"}, "text", "empty"},
		{"nil page: shape only", nil, nextaction.Action{Type: "click", Name: "anything"}, "", ""},
		{"nil page: no text limit", nil, nextaction.Action{Type: "type_and_submit", Name: "q", Text: strings.Repeat("x", 1000)}, "", ""},
		{"nil page: name still required", nil, nextaction.Action{Type: "click"}, "name", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			maxText := 20
			if tt.page == nil {
				maxText = 0
			}
			err := tt.action.Validate(tt.page, maxText)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var fe *nextaction.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a *FieldError", err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Msg, tt.msg) {
				t.Errorf("Validate = %q (field %q), want field %q and message containing %q", err, fe.Field, tt.field, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("Error() = %q, want it to start with the field", err)
			}
		})
	}
}

func TestParseAction(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    nextaction.Action
		wantErr string
	}{
		{`{"type":"click","name":"a.b"}`, nextaction.Action{Type: "click", Name: "a.b"}, ""},
		{` {"name":"q","text":"red \"shirt\"","type":"type_and_submit"} `, nextaction.Action{Type: "type_and_submit", Name: "q", Text: `red "shirt"`}, ""},
		{`{"type":"terminate"}`, nextaction.Action{Type: "terminate"}, ""},
		{`{"type":"jump"}`, nextaction.Action{Type: "jump"}, ""}, // parsed, not validated
		{`{"type":"click","name":"a","extra":1}`, nextaction.Action{}, "unknown field"},
		{`{"type":"click"} {"type":"terminate"}`, nextaction.Action{}, "trailing data"},
		{`{"type":"click"}x`, nextaction.Action{}, "trailing data"},
		{`{"type":"click"`, nextaction.Action{}, "parse action"},
		{`null`, nextaction.Action{}, "not a JSON object"},
		{`[]`, nextaction.Action{}, "not a JSON object"},
		{``, nextaction.Action{}, "not a JSON object"},
		{`{"type":1}`, nextaction.Action{}, "parse action"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := nextaction.ParseAction([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAction = %+v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseAction = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestActionJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		action nextaction.Action
		want   string
	}{
		{nextaction.Action{Type: "click", Name: "columbia_shirt.view_product"}, `{"type":"click","name":"columbia_shirt.view_product"}`},
		{nextaction.Action{Type: "type_and_submit", Name: "search_input", Text: "shirt"}, `{"type":"type_and_submit","name":"search_input","text":"shirt"}`},
		{nextaction.Action{Type: "terminate"}, `{"type":"terminate"}`},
		{nextaction.Action{Type: "click", Name: "a<b>&c\u2028"}, `{"type":"click","name":"a<b>&c\u2028"}`}, // escaped as encoding/json does
		{nextaction.Action{Type: "type_and_submit", Name: "q", Text: "say \"hi\"\\\n\t\r\x01é"}, `{"type":"type_and_submit","name":"q","text":"say \"hi\"\\\n\t\r\u0001é"}`},
		{nextaction.Action{Type: "type_and_submit", Name: "q", Text: "bad\xffbyte"}, `{"type":"type_and_submit","name":"q","text":"bad\ufffdbyte"}`},
		{nextaction.Action{Type: "click", Text: "t"}, `{"type":"click","text":"t"}`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			got := tt.action.JSON()
			if got != tt.want {
				t.Fatalf("JSON = %s, want %s", got, tt.want)
			}
			back, err := nextaction.ParseAction([]byte(got))
			if err != nil {
				t.Fatalf("ParseAction(JSON) = %v", err)
			}
			var viaStd nextaction.Action
			if err := json.Unmarshal([]byte(got), &viaStd); err != nil || viaStd != back {
				t.Fatalf("encoding/json reads %+v, %v; ParseAction %+v", viaStd, err, back)
			}
			if strings.ToValidUTF8(tt.action.Text, "\uFFFD") == tt.action.Text && back != tt.action {
				t.Errorf("round trip = %+v, want %+v", back, tt.action)
			}
		})
	}
}
