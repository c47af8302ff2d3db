package nextaction

import (
	"errors"
	"fmt"
)

// Grammars is a model's constrained-decoding support: its vocabulary
// indexed for the byte-level decoder, a cache of compiled grammars and the
// bounds of JSON schemas. Next actions (Planner) and structured outputs
// (JSON) both use it; it is built once per model. Goroutine-safe.
type Grammars struct {
	vocab        *Vocab
	cache        *GrammarCache
	schemaLimits SchemaLimits
}

// NewGrammars bundles a model's vocabulary index and grammar cache; zero
// SchemaLimits fields take DefaultSchemaLimits.
func NewGrammars(v *Vocab, cache *GrammarCache, l SchemaLimits) (*Grammars, error) {
	if v == nil || cache == nil {
		return nil, errors.New("grammars: a vocabulary and a cache are required")
	}
	return &Grammars{vocab: v, cache: cache, schemaLimits: l.withDefaults()}, nil
}

// Cache is the grammar cache, for its statistics.
func (g *Grammars) Cache() *GrammarCache { return g.cache }

// JSON is the constraint of a structured output: any JSON object for a nil
// schema (response_format json_object), else the schema's (json_schema).
// The output always parses, matches and closes within its token budget.
// Errors: *UnsupportedError (a keyword the compiler does not handle),
// *LimitError (over a schema limit), or another error for a schema that
// cannot be compiled.
func (g *Grammars) JSON(schema []byte) (*ByteConstraint, error) {
	gr, err := g.cache.Schema(schema, g.schemaLimits)
	if err != nil {
		return nil, err
	}
	return NewByteConstraint(g.vocab, gr), nil
}

// SchemaError explains err, an error of JSON, as the client should see it:
// a machine-readable code (unsupported_schema, schema_too_large, or "")
// and a sentence.
func SchemaError(err error) (code, msg string) {
	var (
		ue *UnsupportedError
		le *LimitError
	)
	switch {
	case errors.As(err, &ue):
		return "unsupported_schema", ue.Error() + "."
	case errors.As(err, &le):
		got := fmt.Sprint(le.Got)
		if le.Limit == LimitGrammarNodes {
			got = fmt.Sprintf("more than %d", le.Max) // counting stops there
		}
		return "schema_too_large", fmt.Sprintf(
			"The schema exceeds the server's limit on %s (at %s): at most %d, this schema has %s. Simplify it (smaller maxItems, fewer values, less nesting).",
			le.Limit, le.Path, le.Max, got)
	}
	return "", fmt.Sprintf("The schema cannot be used: %v.", err)
}
