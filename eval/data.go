package eval

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nextact/nextact/nextaction"
)

// ClickTypePurchase is the click_type of a purchase click (OPeRA: "click on
// purchase intention related buttons: checkout, buy now, set
// subscription, add to cart").
const ClickTypePurchase = "purchase"

// Step is one recorded step of a session: the page the shopper saw, what
// they did and, when recorded, why.
type Step struct {
	// ActionID and Timestamp order the steps of Parquet data; empty for
	// JSONL, whose steps are numbered.
	ActionID, Timestamp string
	Page                string
	Action              nextaction.Action
	// ClickType is OPeRA's click_type of a click (purchase, product_link,
	// filter, ...); may be empty.
	ClickType string
	Rationale string
}

// Purchase reports whether s is a purchase: a click whose click type is
// purchase.
func (s Step) Purchase() bool {
	return s.Action.Type == nextaction.TypeClick && s.ClickType == ClickTypePurchase
}

// Session is one shopper's session, its steps in order.
type Session struct {
	ID string
	// Persona is free text (OPeRA: the user's survey JSON); may be empty.
	Persona string
	Steps   []Step
}

// Dataset is what Load read.
type Dataset struct {
	// Sessions, sorted by ID.
	Sessions []Session
	// Format is "parquet" or "jsonl"; Files the files read.
	Format string
	Files  []string
	// Rows counts the steps read; Dropped the steps left out by reason
	// (see docs/EVAL.md).
	Rows    int
	Dropped map[string]int
}

// Reasons a step is dropped at load.
const (
	dropNoName  = "click_or_input_without_semantic_id"
	dropNoText  = "input_without_input_text"
	dropNoPage  = "case_without_page"
	dropSession = "session_without_id"
)

// Limits on what is read.
const (
	// MaxPageBytes bounds a page as read (the longest OPeRA page has
	// about 626k characters).
	MaxPageBytes = 16 << 20
	// MaxFieldBytes bounds every other field (persona, rationale, ids).
	MaxFieldBytes = 1 << 20
	// MaxSteps bounds the steps read in all.
	MaxSteps = 10_000_000
)

// Case is one test case: step Index (0-based, at least 1) of a session,
// given the ground-truth history before it.
type Case struct {
	// ID is "<session id>#<step number>", the step number 1-based.
	ID        string
	SessionID string
	// Index is the step's index in its session.
	Index   int
	Persona string
	Page    string
	// History is the steps before this one (a view of the session's).
	History []Step
	// Truth is what the shopper did; Purchase whether it was a purchase.
	Truth    nextaction.Action
	Purchase bool
	// Last marks the last step of its session: the case of the session's
	// outcome.
	Last bool
}

// CaseID is the ID of step index (0-based) of session id.
func CaseID(session string, index int) string {
	return session + "#" + strconv.Itoa(index+1)
}

// Cases returns the test cases of d: steps 2..N of every session, in
// session order. A step without a page is not a case (it still counts in
// the history); the session's outcome case is its last step.
func (d *Dataset) Cases() []Case {
	var out []Case
	for _, s := range d.Sessions {
		for i := 1; i < len(s.Steps); i++ {
			st := s.Steps[i]
			if st.Page == "" {
				continue
			}
			out = append(out, Case{
				ID: CaseID(s.ID, i), SessionID: s.ID, Index: i, Persona: s.Persona, Page: st.Page,
				History: s.Steps[:i:i], Truth: st.Action, Purchase: st.Purchase(), Last: i == len(s.Steps)-1,
			})
		}
	}
	return out
}

// hasCases reports whether s has a case: a step after the first with a
// page.
func (s Session) hasCases() bool {
	for i := 1; i < len(s.Steps); i++ {
		if s.Steps[i].Page != "" {
			return true
		}
	}
	return false
}

// PurchaseNames returns the element names clicked as purchases anywhere
// in d: a predicted click on one of them is a predicted purchase.
func (d *Dataset) PurchaseNames() map[string]bool {
	out := map[string]bool{}
	for _, s := range d.Sessions {
		for _, st := range s.Steps {
			if st.Purchase() {
				out[st.Action.Name] = true
			}
		}
	}
	return out
}

// Load reads a data set: a directory of Parquet files in OPeRA's layout,
// one Parquet action file, or a JSONL file (see docs/EVAL.md). split, when
// not empty, keeps only Parquet files of that split (train, test).
func Load(path, split string) (*Dataset, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load data: %w", err)
	}
	switch {
	case fi.IsDir():
		return loadParquetDir(path, split)
	case strings.EqualFold(filepath.Ext(path), ".parquet"):
		return loadParquetFiles([]string{path}, split)
	}
	return LoadJSONL(path)
}

// builder collects steps by session.
type builder struct {
	d        *Dataset
	sessions map[string]*Session
	order    map[string][]sortKey
}

// sortKey orders a session's steps: the JSONL step number, or Parquet's
// timestamp then action_id; seq keeps the input order of full ties.
type sortKey struct {
	step      int
	timestamp string
	actionID  string
	seq       int
	t         time.Time // the parsed timestamp, when every step's parses
}

func newBuilder(format string) *builder {
	return &builder{d: &Dataset{Format: format, Dropped: map[string]int{}}, sessions: map[string]*Session{}, order: map[string][]sortKey{}}
}

func (b *builder) drop(reason string) { b.d.Dropped[reason]++ }

func (b *builder) add(session, persona string, st Step, key sortKey) error {
	b.d.Rows++
	if b.d.Rows > MaxSteps {
		return fmt.Errorf("more than %d steps", MaxSteps)
	}
	s := b.sessions[session]
	if s == nil {
		s = &Session{ID: session}
		b.sessions[session] = s
	}
	if persona != "" {
		if s.Persona != "" && s.Persona != persona {
			return fmt.Errorf("session %q has two different personas", session)
		}
		s.Persona = persona
	}
	key.seq = len(s.Steps)
	s.Steps = append(s.Steps, st)
	b.order[session] = append(b.order[session], key)
	return nil
}

// finish orders every session's steps and the sessions.
func (b *builder) finish() *Dataset {
	for id, s := range b.sessions {
		keys := b.order[id]
		byTime := parseTimes(keys)
		idx := make([]int, len(s.Steps))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(i, j int) int { return compareKeys(keys[i], keys[j], byTime) })
		steps := make([]Step, len(idx))
		for k, i := range idx {
			steps[k] = s.Steps[i]
		}
		s.Steps = steps
		b.d.Sessions = append(b.d.Sessions, *s)
	}
	slices.SortFunc(b.d.Sessions, func(a, c Session) int { return strings.Compare(a.ID, c.ID) })
	for _, s := range b.d.Sessions {
		for i, st := range s.Steps {
			if i > 0 && st.Page == "" {
				b.drop(dropNoPage)
			}
		}
	}
	return b.d
}

// timeLayouts are the timestamp forms compared as times; a session with a
// timestamp in none of them is ordered by the timestamps' text.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"}

func parseTime(s string) (time.Time, bool) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// parseTimes sets the times of keys and reports whether every timestamp
// parsed.
func parseTimes(keys []sortKey) bool {
	for i := range keys {
		t, ok := parseTime(keys[i].timestamp)
		if !ok {
			return false
		}
		keys[i].t = t
	}
	return true
}

func compareKeys(a, b sortKey, byTime bool) int {
	if c := cmp.Compare(a.step, b.step); c != 0 {
		return c
	}
	if byTime {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
	} else if c := strings.Compare(a.timestamp, b.timestamp); c != 0 {
		return c
	}
	if c := compareIDs(a.actionID, b.actionID); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// compareIDs compares action ids as integers when both are, else as text.
func compareIDs(a, b string) int {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA == nil && errB == nil {
		return cmp.Compare(x, y)
	}
	return strings.Compare(a, b)
}

// mapAction turns an OPeRA row's action into a step's action: click ->
// click on semantic_id, input -> type_and_submit of input_text into
// semantic_id, terminate -> terminate. ok is false (with the drop reason)
// for a click or input without its fields.
func mapAction(actionType, semanticID, inputText string) (a nextaction.Action, reason string, err error) {
	switch strings.ToLower(strings.TrimSpace(actionType)) {
	case "click":
		if semanticID == "" {
			return a, dropNoName, nil
		}
		return nextaction.Action{Type: nextaction.TypeClick, Name: semanticID}, "", nil
	case "input":
		switch {
		case semanticID == "":
			return a, dropNoName, nil
		case inputText == "":
			return a, dropNoText, nil
		}
		return nextaction.Action{Type: nextaction.TypeTypeAndSubmit, Name: semanticID, Text: inputText}, "", nil
	case "terminate":
		return nextaction.Action{Type: nextaction.TypeTerminate}, "", nil
	}
	return a, "", fmt.Errorf("action_type %q (want click, input or terminate: the filtered_action config)", actionType)
}

// checkField bounds one text field.
func checkField(name, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("%s has %d bytes, over the limit of %d", name, len(v), max)
	}
	return nil
}

var errNoSteps = errors.New("no steps")
