package nextaction

import (
	"fmt"
	"strconv"
)

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

// JSONBlocks is the constraint of 1 to n JSON values of schema written as
// blocks: the first value, then optionally closing text, after which
// the output may end or go on with opening text, a value and closing text,
// up to n values:
//
//	value [close (open value close){0,n-1}]
//
// Qwen's tool calls are such blocks (<tool_call>…</tool_call>, the first
// opening in the prompt). The output closes within its token budget as
// JSON's does. Errors are those of JSON; the node limit counts all n
// values.
func (g *Grammars) JSONBlocks(schema []byte, close, open string, n int) (*ByteConstraint, error) {
	if n < 1 {
		return nil, fmt.Errorf("blocks: %d values", n)
	}
	l := g.schemaLimits
	if len(schema) > l.MaxBytes {
		return nil, &LimitError{Limit: LimitSchemaBytes, Max: l.MaxBytes, Got: len(schema), Path: "#"}
	}
	key := "blocks|" + strconv.Itoa(n) + "|" + strconv.Quote(close) + "|" + strconv.Quote(open) + "|" + string(schema)
	gr, err := g.cache.get(key, func() (*Grammar, error) { return compileBlocks(schema, close, open, n, l) })
	if err != nil {
		return nil, err
	}
	return NewByteConstraint(g.vocab, gr), nil
}

func compileBlocks(schema []byte, close, open string, n int, l SchemaLimits) (*Grammar, error) {
	root, err := parseJV(schema)
	if err != nil {
		return nil, fmt.Errorf("schema is not valid JSON: %w", err)
	}
	est, err := estimateSchema(root, l)
	if err != nil {
		return nil, err
	}
	if est*int64(n) > int64(l.MaxNodes) {
		return nil, &LimitError{Limit: LimitGrammarNodes, Max: l.MaxNodes, Got: int(min(est*int64(n), int64(l.MaxNodes)+1)), Path: "#"}
	}
	c := newSchemaCompiler(&builder{maxNodes: l.MaxNodes}, l, root)
	value := func() (part, error) {
		p, err := c.schema(root, "#", 0)
		if err != nil {
			return part{}, c.limitErr(err)
		}
		return p, nil
	}
	// Built from the last block back: tail_k = [open value close tail_{k+1}].
	tail := c.b.empty()
	for range n - 1 {
		v, err := value()
		if err != nil {
			return nil, err
		}
		tail = c.b.opt(c.b.seq(c.b.lit(open), v, c.b.lit(close), tail))
	}
	first, err := value()
	if err != nil {
		return nil, err
	}
	return c.finish(c.b.seq(first, c.b.opt(c.b.seq(c.b.lit(close), tail))))
}
