package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nextact/nextact/nextaction"
)

// jsonlStep is one line of the JSONL format (docs/EVAL.md).
type jsonlStep struct {
	Session   string             `json:"session"`
	Step      int                `json:"step"`
	Page      string             `json:"page"`
	Action    *nextaction.Action `json:"action"`
	ClickType string             `json:"click_type,omitempty"`
	Rationale string             `json:"rationale,omitempty"`
	Persona   string             `json:"persona,omitempty"`
}

// maxLineBytes bounds one JSONL line: a page at its limit, escaped, and
// the rest.
const maxLineBytes = 2*MaxPageBytes + 4*MaxFieldBytes

// LoadJSONL reads the JSONL format: one step a line (docs/EVAL.md).
// Unknown fields, a malformed action, a repeated step number or a field
// over its limit are errors that name the line.
func LoadJSONL(path string) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load data: %w", err)
	}
	defer f.Close()
	d, err := ReadJSONL(f)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	d.Files = []string{path}
	return d, nil
}

// ReadJSONL reads the JSONL format from r.
func ReadJSONL(r io.Reader) (*Dataset, error) {
	b := newBuilder("jsonl")
	seen := map[string]map[int]bool{}
	rd := bufio.NewReaderSize(r, 1<<20)
	for n := 1; ; n++ {
		line, err := readLine(rd, maxLineBytes)
		if len(bytes.TrimSpace(line)) > 0 {
			if err := b.addJSONL(line, seen); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	if b.d.Rows == 0 {
		return nil, errNoSteps
	}
	return b.finish(), nil
}

// readLine reads one line (without its newline) of at most max bytes.
func readLine(rd *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := rd.ReadSlice('\n')
		if len(line)+len(chunk) > max {
			return nil, fmt.Errorf("line longer than %d bytes", max)
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), err
	}
}

func (b *builder) addJSONL(line []byte, seen map[string]map[int]bool) error {
	var s jsonlStep
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the object")
	}
	switch {
	case s.Session == "":
		return errors.New("session: required")
	case s.Step < 1:
		return fmt.Errorf("step: %d, want a number from 1", s.Step)
	case s.Action == nil:
		return errors.New("action: required")
	}
	if err := s.Action.Validate(nil, 0); err != nil {
		return fmt.Errorf("action.%w", err)
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"session", s.Session, MaxFieldBytes}, {"page", s.Page, MaxPageBytes}, {"persona", s.Persona, MaxFieldBytes},
		{"rationale", s.Rationale, MaxFieldBytes}, {"click_type", s.ClickType, MaxFieldBytes}, {"action.name", s.Action.Name, MaxFieldBytes},
		{"action.text", s.Action.Text, MaxFieldBytes}} {
		if err := checkField(f.name, f.v, f.max); err != nil {
			return err
		}
	}
	if seen[s.Session] == nil {
		seen[s.Session] = map[int]bool{}
	}
	if seen[s.Session][s.Step] {
		return fmt.Errorf("session %q has step %d twice", s.Session, s.Step)
	}
	seen[s.Session][s.Step] = true
	st := Step{Page: s.Page, Action: *s.Action, ClickType: s.ClickType, Rationale: s.Rationale}
	return b.add(s.Session, s.Persona, st, sortKey{step: s.Step})
}

// WriteJSONL writes sessions in the JSONL format, steps numbered from 1 in
// session order, the persona on each session's first step. order, when
// not nil, is the order of the lines (every step once); nil writes them
// in session order.
func WriteJSONL(w io.Writer, sessions []Session, order []StepRef) error {
	if order == nil {
		order = stepsInOrder(sessions)
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, r := range order {
		s := sessions[r.Session]
		st := s.Steps[r.Step]
		a := st.Action
		line := jsonlStep{Session: s.ID, Step: r.Step + 1, Page: st.Page, Action: &a, ClickType: st.ClickType, Rationale: st.Rationale}
		if r.Step == 0 {
			line.Persona = s.Persona
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// stepsInOrder refers to every step of sessions in session order.
func stepsInOrder(sessions []Session) []StepRef {
	var out []StepRef
	for si, s := range sessions {
		for k := range s.Steps {
			out = append(out, StepRef{si, k})
		}
	}
	return out
}
