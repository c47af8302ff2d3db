package eval_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/nextact/nextact/eval"
	"github.com/nextact/nextact/nextaction"
)

// writeFixture generates a fixture and writes both formats under a temp
// directory.
func writeFixture(t testing.TB, o eval.FixtureOptions) (f *eval.Fixture, jsonlPath, parquetDir string) {
	t.Helper()
	f = eval.GenerateFixture(o)
	jsonlPath, parquetDir, err := f.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f, jsonlPath, parquetDir
}

// The same sessions read from Parquet (OPeRA's layout, rows shuffled,
// ordered by timestamp and numeric action_id) and from JSONL (lines
// shuffled, ordered by step) give identical case lists, equal to the
// generated sessions'.
func TestParquetAndJSONLSameCases(t *testing.T) {
	t.Parallel()
	f, jsonlPath, parquetDir := writeFixture(t, eval.FixtureOptions{Sessions: 30, Seed: 7, LongPageEvery: 9, LongPageBytes: 20000})
	pq, err := eval.Load(parquetDir, "")
	if err != nil {
		t.Fatal(err)
	}
	js, err := eval.Load(jsonlPath, "")
	if err != nil {
		t.Fatal(err)
	}
	if pq.Format != "parquet" || js.Format != "jsonl" || len(pq.Files) != 3 {
		t.Fatalf("formats %s %s, files %v", pq.Format, js.Format, pq.Files)
	}
	// The action table has every column of OPeRA's filtered_action, each a
	// string.
	schema := parquetSchema(t, filepath.Join(parquetDir, eval.ActionFile))
	for _, col := range []string{"session_id", "action_id", "timestamp", "action_type", "click_type", "semantic_id", "mouse_position",
		"element_meta", "url", "window_size", "page_meta", "simplified_html", "rationale", "products", "input_text", "image"} {
		leaf, ok := schema.Lookup(col)
		if !ok {
			t.Errorf("no column %s", col)
			continue
		}
		if lt := leaf.Node.Type().LogicalType(); leaf.Node.Type().Kind() != parquet.ByteArray || lt == nil || lt.String() != "STRING" || !leaf.Node.Optional() {
			t.Errorf("column %s is %v, want an optional string", col, leaf.Node)
		}
	}
	if n := len(schema.Fields()); n != 16 {
		t.Errorf("the action table has %d columns, want 16", n)
	}
	sorted := slices.Clone(f.Sessions)
	slices.SortFunc(sorted, func(a, b eval.Session) int { return strings.Compare(a.ID, b.ID) })
	want := &eval.Dataset{Sessions: sorted}
	wantCases := want.Cases()
	if len(wantCases) < 60 {
		t.Fatalf("fixture has only %d cases", len(wantCases))
	}
	for name, d := range map[string]*eval.Dataset{"parquet": pq, "jsonl": js} {
		got := d.Cases()
		for i := range got {
			// JSONL has no timestamps or action ids: compare what a case
			// is made of.
			got[i].History = stripOrderKeys(got[i].History)
		}
		for i := range wantCases {
			wantCases[i].History = stripOrderKeys(wantCases[i].History)
		}
		if !reflect.DeepEqual(got, wantCases) {
			for i := range min(len(got), len(wantCases)) {
				if !reflect.DeepEqual(got[i], wantCases[i]) {
					t.Fatalf("%s: case %d differs:\n got %+v\nwant %+v", name, i, trimCase(got[i]), trimCase(wantCases[i]))
				}
			}
			t.Fatalf("%s: %d cases, want %d", name, len(got), len(wantCases))
		}
		if d.Rows != len(f.Order) || len(d.Dropped) != 0 {
			t.Errorf("%s: %d rows, dropped %v", name, d.Rows, d.Dropped)
		}
		if !reflect.DeepEqual(d.PurchaseNames(), want.PurchaseNames()) || len(want.PurchaseNames()) == 0 {
			t.Errorf("%s: purchase names %v, want %v", name, d.PurchaseNames(), want.PurchaseNames())
		}
	}
}

func parquetSchema(t *testing.T, path string) *parquet.Schema {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	return pf.Schema()
}

func stripOrderKeys(h []eval.Step) []eval.Step {
	out := make([]eval.Step, len(h))
	for i, s := range h {
		s.ActionID, s.Timestamp = "", ""
		out[i] = s
	}
	return out
}

func TestCasesDefinition(t *testing.T) {
	t.Parallel()
	click := func(n string) nextaction.Action { return nextaction.Action{Type: "click", Name: n} }
	d := &eval.Dataset{Sessions: []eval.Session{
		{ID: "a", Persona: "p", Steps: []eval.Step{{Page: "1", Action: click("x")}, {Page: "2", Action: click("buy"), ClickType: "purchase"}, {Page: "3", Action: nextaction.Action{Type: "terminate"}}}},
		{ID: "b", Steps: []eval.Step{{Page: "1", Action: click("x")}}},                                               // one step: no case
		{ID: "c", Steps: []eval.Step{{Action: click("x")}, {Action: click("y")}, {Page: "3", Action: click("buy")}}}, // no page: not a case
	}}
	got := d.Cases()
	var ids []string
	for _, c := range got {
		ids = append(ids, c.ID)
	}
	if strings.Join(ids, " ") != "a#2 a#3 c#3" {
		t.Fatalf("cases %v", ids)
	}
	if !got[0].Purchase || got[0].Last || !got[1].Last || got[1].Purchase || len(got[1].History) != 2 || got[1].Persona != "p" {
		t.Errorf("case fields: %+v", got[:2])
	}
	if got[2].Purchase || !got[2].Last || len(got[2].History) != 2 {
		t.Errorf("c#3: %+v", got[2])
	}
	// A history is a view that cannot be appended into the session.
	_ = append(got[0].History, eval.Step{Page: "x"})
	if d.Sessions[0].Steps[1].Page != "2" {
		t.Fatal("appending to a history overwrote the session")
	}
}

func TestLoadJSONLErrors(t *testing.T) {
	t.Parallel()
	ok := `{"session":"s","step":1,"page":"<a name=\"x\">x</a>","action":{"type":"click","name":"x"}}`
	tests := map[string]string{
		"unknown field":    `{"session":"s","step":1,"page":"p","action":{"type":"click","name":"x"},"extra":1}`,
		"action field":     `{"session":"s","step":1,"page":"p","action":{"type":"click","name":"x","why":"no"}}`,
		"no session":       `{"step":1,"page":"p","action":{"type":"terminate"}}`,
		"step zero":        `{"session":"s","step":0,"page":"p","action":{"type":"terminate"}}`,
		"no action":        `{"session":"s","step":2,"page":"p"}`,
		"bad type":         `{"session":"s","step":2,"page":"p","action":{"type":"scroll"}}`,
		"click no name":    `{"session":"s","step":2,"page":"p","action":{"type":"click"}}`,
		"repeated step":    ok,
		"two personas":     `{"session":"s","step":2,"page":"p","persona":"b","action":{"type":"terminate"}}` + "\n" + `{"session":"s","step":3,"page":"p","persona":"c","action":{"type":"terminate"}}`,
		"trailing data":    `{"session":"s","step":2,"page":"p","action":{"type":"terminate"}} {}`,
		"not json":         `session,step`,
		"field over limit": `{"session":"s","step":2,"page":"p","rationale":"` + strings.Repeat("r", eval.MaxFieldBytes+1) + `","action":{"type":"terminate"}}`,
	}
	dir := t.TempDir()
	for name, line := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".jsonl")
			if err := os.WriteFile(p, []byte(ok+"\n"+line+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := eval.Load(p, "")
			if err == nil || !strings.Contains(err.Error(), "line 2") && name != "two personas" {
				t.Fatalf("got %v, want an error on line 2", err)
			}
		})
	}
	empty := filepath.Join(dir, "empty.jsonl")
	_ = os.WriteFile(empty, []byte("\n\n"), 0o644)
	if _, err := eval.Load(empty, ""); err == nil {
		t.Fatal("an empty file loaded")
	}
}

// trimCase drops the pages of c, for messages.
func trimCase(c eval.Case) eval.Case {
	c.Page = ""
	c.History = slices.Clone(c.History)
	for i := range c.History {
		c.History[i].Page = ""
	}
	return c
}

// Parquet that is not OPeRA's: a file that is not Parquet, a column of
// another type, an action type outside the filtered config, two splits
// without --split.
func TestLoadParquetErrors(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		setup func(t *testing.T, dir string)
		want  string
	}{
		"not parquet": {func(t *testing.T, dir string) {
			_ = os.WriteFile(filepath.Join(dir, "x.parquet"), []byte("PAR1 but not really"), 0o644)
		}, "x.parquet"},
		"int column": {func(t *testing.T, dir string) {
			writeRows(t, filepath.Join(dir, "a.parquet"), []intRow{{SessionID: "s", ActionType: 1}})
		}, "want a string column"},
		"scroll": {func(t *testing.T, dir string) {
			writeRows(t, filepath.Join(dir, "a.parquet"), []strRow{{SessionID: "s", ActionType: "scroll"}})
		}, `action_type "scroll"`},
		"two splits": {func(t *testing.T, dir string) {
			writeRows(t, filepath.Join(dir, "train-0.parquet"), []strRow{{SessionID: "s", ActionType: "terminate"}})
			writeRows(t, filepath.Join(dir, "test-0.parquet"), []strRow{{SessionID: "s", ActionType: "terminate"}})
		}, "--split"},
		"empty directory": {func(t *testing.T, dir string) {}, "no .parquet file"},
		"no action table": {func(t *testing.T, dir string) {
			writeRows(t, filepath.Join(dir, "u.parquet"), []userOnly{{UserID: "u", Survey: "{}"}})
		}, "no action table"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tc.setup(t, dir)
			if _, err := eval.Load(dir, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	// --split picks one.
	dir := t.TempDir()
	writeRows(t, filepath.Join(dir, "train-0.parquet"), []strRow{{SessionID: "s", ActionType: "terminate"}})
	writeRows(t, filepath.Join(dir, "test-0.parquet"), []strRow{{SessionID: "t", ActionType: "terminate"}})
	d, err := eval.Load(dir, "test")
	if err != nil || len(d.Sessions) != 1 || d.Sessions[0].ID != "t" {
		t.Fatalf("--split test: %v %+v", err, d)
	}
}

type intRow struct {
	SessionID  string `parquet:"session_id"`
	ActionType int64  `parquet:"action_type"`
}

type strRow struct {
	SessionID  string `parquet:"session_id"`
	ActionType string `parquet:"action_type"`
}

type userOnly struct {
	UserID string `parquet:"user_id"`
	Survey string `parquet:"survey"`
}

// writeRows writes rows as a Parquet file at path.
func writeRows[T any](t *testing.T, path string, rows []T) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := parquet.NewGenericWriter[T](f)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// Invalid UTF-8 in Parquet reads as a JSON decoder reads it from JSONL:
// each bad byte becomes U+FFFD.
func TestParquetInvalidUTF8(t *testing.T) {
	t.Parallel()
	type row struct {
		SessionID  string `parquet:"session_id"`
		ActionID   string `parquet:"action_id"`
		ActionType string `parquet:"action_type"`
		SemanticID string `parquet:"semantic_id"`
		Page       string `parquet:"simplified_html"`
	}
	bad := "a\xff\xfeb\xe2\x82"
	dir := t.TempDir()
	writeRows(t, filepath.Join(dir, "a.parquet"), []row{
		{"s", "1", "click", bad, "<p>" + bad + "</p>"},
		{"s", "2", "click", bad, "<p>" + bad + "</p>"},
	})
	d, err := eval.Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	var want string
	if err := json.Unmarshal([]byte(`"`+bad+`"`), &want); err != nil {
		t.Fatal(err)
	}
	st := d.Sessions[0].Steps[1]
	if st.Action.Name != want || st.Page != "<p>"+want+"</p>" || want != "a\uFFFD\uFFFDb\uFFFD\uFFFD" {
		t.Errorf("read %q / %q, JSON reads %q", st.Action.Name, st.Page, want)
	}
}
