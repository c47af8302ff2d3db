package nextactiontest

import (
	"bytes"
	"embed"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// corpus is the schema corpus: 50 real-world JSON schemas written for the
// tests (Pydantic models with $defs, $ref and optional fields, Zod-style
// draft-07 schemas, OpenAI strict-mode examples, shopping schemas), each
// of which constrained decoding must support.
//
//go:embed testdata/schemas/*.json
var corpus embed.FS

// Schema is one schema of the corpus.
type Schema struct {
	Name string // the file name without .json
	JSON []byte
}

// SchemaCorpus returns the corpus, sorted by name.
func SchemaCorpus(t testing.TB) []Schema {
	t.Helper()
	entries, err := corpus.ReadDir("testdata/schemas")
	if err != nil {
		t.Fatal(err)
	}
	var out []Schema
	for _, e := range entries {
		data, err := corpus.ReadFile(path.Join("testdata/schemas", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Schema{Name: strings.TrimSuffix(e.Name(), ".json"), JSON: data})
	}
	slices.SortFunc(out, func(a, b Schema) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Validator compiles schema with a real JSON Schema validator
// (santhosh-tekuri/jsonschema: draft 2020-12 unless $schema says
// otherwise, formats asserted) and returns a function that validates one
// JSON document against it.
func Validator(t testing.TB, schema []byte) func(doc []byte) error {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	if err := c.AddResource("mem://schema.json", doc); err != nil {
		t.Fatalf("schema: %v", err)
	}
	sch, err := c.Compile("mem://schema.json")
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	return func(out []byte) error {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
		if err != nil {
			return err
		}
		return sch.Validate(v)
	}
}
