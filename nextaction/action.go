package nextaction

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/nextact/nextact/internal/jsonstr"
)

// The action types of the paper's action space.
const (
	TypeClick         = "click"
	TypeTypeAndSubmit = "type_and_submit"
	TypeTerminate     = "terminate"
)

// Action is what a shopper does next. Name is an element name of the page
// (a clickable for click, an input for type_and_submit); Text is what is
// typed (type_and_submit only). Terminate has neither.
type Action struct {
	Type string `json:"type"`
	Name string `json:"name,omitempty"`
	Text string `json:"text,omitempty"`
}

// FieldError is a validation error that names the offending field of a
// request, as a JSON path such as history[3].action.type. Functions of this
// package return it as *FieldError, so the server can answer 400 with the
// field as the error's param.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// prefixField returns err with prefix added to its field path when it is a
// *FieldError, and err unchanged otherwise.
func prefixField(prefix string, err error) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	f := prefix
	if fe.Field != "" {
		f += "." + fe.Field
	}
	return &FieldError{Field: f, Msg: fe.Msg}
}

// Validate checks a against page p. The type must be one of the three; a
// click names a clickable of p, a type_and_submit an input of p with
// non-empty text of at most maxText bytes; terminate has no name or text.
// A nil p checks the shape only (any non-empty name is accepted), as for
// history entries whose page is not parsed; maxText <= 0 means no limit.
// Errors are *FieldError with Field type, name or text.
func (a Action) Validate(p *Page, maxText int) error {
	switch a.Type {
	case TypeClick:
		if err := a.checkName(p, Clickable); err != nil {
			return err
		}
		if a.Text != "" {
			return &FieldError{"text", "must be empty for a click"}
		}
	case TypeTypeAndSubmit:
		if err := a.checkName(p, Input); err != nil {
			return err
		}
		switch {
		case a.Text == "":
			return &FieldError{"text", "required for type_and_submit"}
		case maxText > 0 && len(a.Text) > maxText:
			return &FieldError{"text", fmt.Sprintf("%d bytes, more than the limit of %d", len(a.Text), maxText)}
		case !utf8.ValidString(a.Text):
			return &FieldError{"text", "invalid UTF-8"}
		}
	case TypeTerminate:
		if a.Name != "" {
			return &FieldError{"name", "must be empty for terminate"}
		}
		if a.Text != "" {
			return &FieldError{"text", "must be empty for terminate"}
		}
	case "":
		return &FieldError{"type", "required (valid: click, type_and_submit, terminate)"}
	default:
		return &FieldError{"type", fmt.Sprintf("unknown action type %s (valid: click, type_and_submit, terminate)", strconv.Quote(a.Type))}
	}
	return nil
}

func (a Action) checkName(p *Page, k Kind) error {
	switch {
	case a.Name == "":
		return &FieldError{"name", "required for " + a.Type}
	case p == nil:
		return nil
	case !p.Has(a.Name, k):
		return &FieldError{"name", fmt.Sprintf("%s is not the name of %s element of the page", strconv.Quote(a.Name), article(k))}
	}
	return nil
}

func article(k Kind) string {
	if k == Input {
		return "an input"
	}
	return "a clickable"
}

// ParseAction decodes one action object strictly: unknown fields, a value
// that is not an object and trailing data are errors. It does not validate
// the action: see Validate.
func ParseAction(b []byte) (Action, error) {
	if t := bytes.TrimLeft(b, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return Action{}, errors.New("parse action: not a JSON object")
	}
	var a Action
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return Action{}, fmt.Errorf("parse action: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Action{}, errors.New("parse action: trailing data after the object")
	}
	return a, nil
}

// JSON renders a canonically: keys in the order type, name, text, empty
// name and text left out, no spaces, and only the escapes JSON requires
// (names from ParsePage come out verbatim).
func (a Action) JSON() string {
	return string(a.appendJSON(nil))
}

func (a Action) appendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = jsonstr.Append(b, a.Type)
	if a.Name != "" {
		b = append(b, `,"name":`...)
		b = jsonstr.Append(b, a.Name)
	}
	if a.Text != "" {
		b = append(b, `,"text":`...)
		b = jsonstr.Append(b, a.Text)
	}
	return append(b, '}')
}
