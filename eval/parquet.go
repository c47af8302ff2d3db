package eval

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// actionRow is the part of a row of OPeRA's filtered_action config that is
// read (the other columns are never decoded): every column a string, as
// the data set publishes them (nullable).
type actionRow struct {
	SessionID      *string `parquet:"session_id,optional"`
	ActionID       *string `parquet:"action_id,optional"`
	Timestamp      *string `parquet:"timestamp,optional"`
	ActionType     *string `parquet:"action_type,optional"`
	ClickType      *string `parquet:"click_type,optional"`
	SemanticID     *string `parquet:"semantic_id,optional"`
	SimplifiedHTML *string `parquet:"simplified_html,optional"`
	Rationale      *string `parquet:"rationale,optional"`
	InputText      *string `parquet:"input_text,optional"`
}

// operaAction is a whole row of filtered_action, as written.
type operaAction struct {
	actionRow
	MousePosition *string `parquet:"mouse_position,optional"`
	ElementMeta   *string `parquet:"element_meta,optional"`
	URL           *string `parquet:"url,optional"`
	WindowSize    *string `parquet:"window_size,optional"`
	PageMeta      *string `parquet:"page_meta,optional"`
	Products      *string `parquet:"products,optional"`
	Image         *string `parquet:"image,optional"`
}

// userRow is the part of the user table that is read (survey is the
// persona); operaUser a whole row.
type userRow struct {
	UserID *string `parquet:"user_id,optional"`
	Survey *string `parquet:"survey,optional"`
}

type operaUser struct {
	userRow
	RawSurvey                    *string `parquet:"raw_survey,optional"`
	InterviewTranscript          *string `parquet:"interview_transcript,optional"`
	InterviewTranscriptProcessed *string `parquet:"interview_transcript_processed,optional"`
}

// sessionRow is the part of the session table that is read; operaSession
// a whole row.
type sessionRow struct {
	SessionID *string `parquet:"session_id,optional"`
	UserID    *string `parquet:"user_id,optional"`
}

type operaSession struct {
	sessionRow
	ActionCount int64 `parquet:"action_count"`
}

// The tables, told apart by their columns.
const (
	tableAction  = "action"
	tableUser    = "user"
	tableSession = "session"
)

// tableColumns are the string columns each table must have.
var tableColumns = map[string][]string{
	tableAction:  {"session_id", "action_type"},
	tableUser:    {"user_id", "survey"},
	tableSession: {"session_id", "user_id"},
}

// optionalColumns are read when present and must then be strings.
var optionalColumns = []string{"action_id", "timestamp", "click_type", "semantic_id", "simplified_html", "rationale", "input_text"}

// str is a column's value: "" for null, invalid UTF-8 replaced by U+FFFD
// as a JSON decoder does (so the same data in Parquet and JSONL reads the
// same).
func str(p *string) string {
	if p == nil {
		return ""
	}
	if utf8.ValidString(*p) {
		return *p
	}
	var b strings.Builder
	for i := 0; i < len(*p); {
		r, size := utf8.DecodeRuneInString((*p)[i:])
		b.WriteRune(r) // an invalid byte decodes as U+FFFD, one byte at a time
		i += size
	}
	return b.String()
}

// loadParquetDir reads every .parquet file under dir.
func loadParquetDir(dir, split string) (*Dataset, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && strings.EqualFold(filepath.Ext(p), ".parquet") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load data: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("load data: no .parquet file under %s", dir)
	}
	return loadParquetFiles(files, split)
}

// splitOf names the split of a file by its path: a folder named train,
// test or validation, or a file name starting so; "" when none.
func splitOf(path string) string {
	for _, part := range strings.Split(filepath.ToSlash(path), "/") {
		base := strings.TrimSuffix(strings.ToLower(part), ".parquet")
		for _, s := range []string{"train", "test", "validation"} {
			if base == s || strings.HasPrefix(base, s+"-") {
				return s
			}
		}
	}
	return ""
}

// loadParquetFiles reads the action, user and session tables among files.
func loadParquetFiles(files []string, split string) (*Dataset, error) {
	slices.Sort(files)
	tables := map[string][]string{}
	splits := map[string]bool{}
	for _, p := range files {
		s := splitOf(p)
		if split != "" && s != "" && s != split {
			continue
		}
		kind, err := tableOf(p)
		if err != nil {
			return nil, err
		}
		if kind == "" {
			continue
		}
		tables[kind] = append(tables[kind], p)
		if kind == tableAction && s != "" {
			splits[s] = true
		}
	}
	if len(tables[tableAction]) == 0 {
		return nil, errors.New("load data: no action table (a Parquet file with session_id and action_type columns)")
	}
	if split == "" && len(splits) > 1 {
		return nil, fmt.Errorf("load data: the action files hold several splits (%s): choose one with --split", strings.Join(sortedKeys(splits), ", "))
	}
	personas, err := readPersonas(tables[tableUser], tables[tableSession])
	if err != nil {
		return nil, err
	}
	b := newBuilder("parquet")
	for _, p := range tables[tableAction] {
		if err := readRows(p, func(r actionRow) error { return b.addParquet(r, personas) }); err != nil {
			return nil, err
		}
		b.d.Files = append(b.d.Files, p)
	}
	if b.d.Rows == 0 {
		return nil, fmt.Errorf("load data: %w", errNoSteps)
	}
	b.d.Files = append(b.d.Files, tables[tableUser]...)
	b.d.Files = append(b.d.Files, tables[tableSession]...)
	return b.finish(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// personaOf finds a session's persona.
type personaOf func(session string) string

// readPersonas reads the user tables (user_id -> survey) and session
// tables (session_id -> user_id). A session's user is the session table's,
// or else the user whose id, followed by "_", starts the session id
// (OPeRA's session ids are {user_id}_{start}_{end}).
func readPersonas(userFiles, sessionFiles []string) (personaOf, error) {
	surveys := map[string]string{}
	for _, p := range userFiles {
		err := readRows(p, func(r userRow) error {
			if err := checkField("survey", str(r.Survey), MaxFieldBytes); err != nil {
				return err
			}
			if id := str(r.UserID); id != "" {
				surveys[id] = str(r.Survey)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	users := map[string]string{}
	for _, p := range sessionFiles {
		err := readRows(p, func(r sessionRow) error {
			users[str(r.SessionID)] = str(r.UserID)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return func(session string) string {
		if u, ok := users[session]; ok {
			return surveys[u]
		}
		if u, _, ok := strings.Cut(session, "_"); ok {
			return surveys[u]
		}
		return ""
	}, nil
}

func (b *builder) addParquet(r actionRow, persona personaOf) error {
	for _, f := range []struct {
		name string
		v    *string
		max  int
	}{{"session_id", r.SessionID, MaxFieldBytes}, {"action_id", r.ActionID, MaxFieldBytes}, {"timestamp", r.Timestamp, MaxFieldBytes},
		{"semantic_id", r.SemanticID, MaxFieldBytes}, {"simplified_html", r.SimplifiedHTML, MaxPageBytes},
		{"rationale", r.Rationale, MaxFieldBytes}, {"input_text", r.InputText, MaxFieldBytes}, {"click_type", r.ClickType, MaxFieldBytes}} {
		if err := checkField(f.name, str(f.v), f.max); err != nil {
			return fmt.Errorf("row %d: %w", b.d.Rows+1, err)
		}
	}
	session := str(r.SessionID)
	if session == "" {
		b.d.Rows++
		b.drop(dropSession)
		return nil
	}
	a, reason, err := mapAction(str(r.ActionType), str(r.SemanticID), str(r.InputText))
	if err != nil {
		return fmt.Errorf("row %d: %w", b.d.Rows+1, err)
	}
	if reason != "" {
		b.d.Rows++
		b.drop(reason)
		return nil
	}
	st := Step{ActionID: str(r.ActionID), Timestamp: str(r.Timestamp), Page: str(r.SimplifiedHTML), Action: a, Rationale: str(r.Rationale)}
	if a.Type == "click" {
		st.ClickType = strings.ToLower(strings.TrimSpace(str(r.ClickType)))
	}
	return b.add(session, persona(session), st, sortKey{timestamp: st.Timestamp, actionID: st.ActionID})
}

// tableOf tells which table a file holds by its columns, "" for none.
func tableOf(path string) (kind string, err error) {
	err = withFile(path, func(f *parquet.File) error {
		s := f.Schema()
		has := func(col string) bool { _, ok := s.Lookup(col); return ok }
		switch {
		case has("action_type"):
			kind = tableAction
		case has("survey"):
			kind = tableUser
		case has("session_id") && has("user_id"):
			kind = tableSession
		default:
			return nil
		}
		cols := tableColumns[kind]
		if kind == tableAction {
			cols = append(slices.Clone(cols), optionalColumns...)
		}
		for _, c := range cols {
			leaf, ok := s.Lookup(c)
			if !ok {
				if slices.Contains(optionalColumns, c) {
					continue
				}
				return fmt.Errorf("%s table has no %s column", kind, c)
			}
			if leaf.Node.Type().Kind() != parquet.ByteArray || leaf.MaxRepetitionLevel != 0 {
				return fmt.Errorf("column %s is %s, want a string column", c, leaf.Node.Type())
			}
		}
		return nil
	})
	return kind, err
}

// readRows calls fn with each row of the Parquet file at path, decoded
// into T (columns matched by name; absent columns read as null).
func readRows[T any](path string, fn func(T) error) error {
	return withFile(path, func(f *parquet.File) error {
		buf := make([]T, 16)
		for _, rg := range f.RowGroups() {
			rd := parquet.NewGenericRowGroupReader[T](rg)
			for {
				n, err := rd.Read(buf)
				for _, r := range buf[:n] {
					if err := fn(r); err != nil {
						rd.Close()
						return err
					}
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					rd.Close()
					return err
				}
			}
			if err := rd.Close(); err != nil {
				return err
			}
		}
		return nil
	})
}

// withFile opens a Parquet file for fn. The library panics on some
// malformed files; that is returned as an error naming the file.
func withFile(path string, fn func(*parquet.File) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("read %s: malformed Parquet: %v", path, r)
		}
	}()
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	f, err := parquet.OpenFile(fh, st.Size())
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := fn(f); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// Paths of the tables WriteParquet writes, under its directory: OPeRA's
// layout for the test split of the filtered configs.
const (
	ActionFile  = "OPeRA_filtered/action/test-00000-of-00001.parquet"
	UserFile    = "OPeRA_filtered/user/test/test.parquet"
	SessionFile = "OPeRA_filtered/session/test/test.parquet"
)

// WriteParquet writes sessions under dir as OPeRA's filtered configs:
// the action table (every step a row, in the given order, nil for session
// order: the reader orders them by timestamp and action_id), the user
// table with each user's survey (the persona) and the session table.
// users maps a session to its user id; a user's survey is the persona of
// their sessions.
func WriteParquet(dir string, sessions []Session, order []StepRef, users map[string]string) error {
	if order == nil {
		order = stepsInOrder(sessions)
	}
	var acts []operaAction
	for _, r := range order {
		s := sessions[r.Session]
		st := s.Steps[r.Step]
		acts = append(acts, operaRow(s.ID, st))
	}
	userIDs := map[string]string{}
	var sess []operaSession
	for _, s := range sessions {
		u := users[s.ID]
		userIDs[u] = s.Persona
		sess = append(sess, operaSession{sessionRow: sessionRow{SessionID: ptr(s.ID), UserID: ptr(u)}, ActionCount: int64(len(s.Steps))})
	}
	var us []operaUser
	for _, u := range sortedKeys(userIDs) {
		us = append(us, operaUser{userRow: userRow{UserID: ptr(u), Survey: ptr(userIDs[u])}, RawSurvey: ptr(userIDs[u])})
	}
	if err := writeTable(filepath.Join(dir, ActionFile), acts); err != nil {
		return err
	}
	if err := writeTable(filepath.Join(dir, UserFile), us); err != nil {
		return err
	}
	return writeTable(filepath.Join(dir, SessionFile), sess)
}

func operaRow(session string, st Step) operaAction {
	r := operaAction{actionRow: actionRow{SessionID: ptr(session), ActionID: ptr(st.ActionID), Timestamp: ptr(st.Timestamp), SimplifiedHTML: ptr(st.Page)}}
	switch st.Action.Type {
	case "click":
		r.ActionType, r.SemanticID, r.ClickType = ptr("click"), ptr(st.Action.Name), ptr(st.ClickType)
	case "type_and_submit":
		r.ActionType, r.SemanticID, r.InputText = ptr("input"), ptr(st.Action.Name), ptr(st.Action.Text)
	default:
		r.ActionType = ptr("terminate")
	}
	if st.Rationale != "" {
		r.Rationale = ptr(st.Rationale)
	}
	r.URL = ptr("https://www.example.com/masked")
	r.WindowSize = ptr(`{"width": 1440, "height": 900}`)
	r.PageMeta = ptr(`{"title": "ShopSim"}`)
	return r
}

func ptr(s string) *string { return &s }

func writeTable[T any](path string, rows []T) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := parquet.NewGenericWriter[T](f, parquet.Compression(&parquet.Snappy))
	if _, err := w.Write(rows); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
