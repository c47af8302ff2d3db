package nextaction

import "fmt"

// CheckSchema checks a JSON schema as JSON would compile it, without
// building its grammar: the schema limits, the nesting and every keyword,
// by the compiler's counting pass, which is linear in the schema whatever
// its bounds multiply to. Tool definitions are checked this way: a
// request may declare many tools, and only a forced call compiles them
// (together, under one node limit). A schema that no value satisfies is
// found only by the build. Errors are those of JSON.
func (g *Grammars) CheckSchema(schema []byte) error {
	if len(schema) > g.schemaLimits.MaxBytes {
		return &LimitError{Limit: LimitSchemaBytes, Max: g.schemaLimits.MaxBytes, Got: len(schema), Path: "#"}
	}
	root, err := parseJV(schema)
	if err != nil {
		return fmt.Errorf("schema is not valid JSON: %w", err)
	}
	_, err = estimateSchema(root, g.schemaLimits)
	return err
}
