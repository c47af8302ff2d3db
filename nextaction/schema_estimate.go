package nextaction

import (
	"encoding/json"
	"fmt"
	"sync"
)

// estimator bounds, before anything is built, the nodes a schema compiles
// to, mirroring the builder construct by construct (an upper bound: the
// builder never makes more). It also enforces the structural limits
// (depth, enum values, literal sizes) and stops counting past MaxNodes, so
// it is linear in the schema whatever the bounds in it multiply to.
type estimator struct {
	l SchemaLimits
}

// fixedSizes are the node counts of the constructs that do not depend on
// the schema, measured once by building them.
var fixedSizes = sync.OnceValue(func() map[string]int64 {
	measure := func(build func(b *builder) part) int64 {
		b := &builder{}
		build(b)
		return int64(len(b.nodes))
	}
	return map[string]int64{
		"integer": measure(func(b *builder) part { return b.integer() }),
		"number": measure(func(b *builder) part {
			return b.seq(b.integer(), b.opt(b.seq(b.lit("."), b.digits(1, 6))))
		}),
		"any":    measure(func(b *builder) part { return b.anyValue(jsonObjectDepth) }),
		"object": measure(func(b *builder) part { return b.anyObject(jsonObjectDepth - 1) }),
	}
})

// cap saturates a count just past the limit, so sums and products stay
// small.
func (e *estimator) cap(n int64) int64 { return min(n, int64(e.l.MaxNodes)+1) }

func (e *estimator) schema(v any, path string, depth int) (int64, error) {
	if depth > e.l.MaxDepth {
		return 0, &LimitError{Limit: LimitSchemaDepth, Max: e.l.MaxDepth, Got: depth, Path: path}
	}
	if v == true {
		return fixedSizes()["any"], nil
	}
	s, ok := v.(map[string]any)
	if !ok {
		return 0, nil // the builder reports it
	}
	if c, ok := s["const"]; ok {
		return e.literal(c, path+"/const")
	}
	if en, ok := s["enum"]; ok {
		vals, _ := en.([]any)
		if len(vals) > e.l.MaxEnum {
			return 0, &LimitError{Limit: LimitEnumValues, Max: e.l.MaxEnum, Got: len(vals), Path: path + "/enum"}
		}
		// A trie: at most a byte node and a split per byte, and an end
		// per value.
		var n int64 = 1
		for i, x := range vals {
			k, err := e.literal(x, fmt.Sprintf("%s/enum/%d", path, i))
			if err != nil {
				return 0, err
			}
			n = e.cap(n + 2*k + 1)
		}
		return n, nil
	}
	types, err := schemaTypes(s, path)
	if err != nil {
		return 0, nil // the builder reports it
	}
	var n int64 = 1
	for _, t := range types {
		k, err := e.typed(t, s, path, depth)
		if err != nil {
			return 0, err
		}
		n = e.cap(n + k)
	}
	return n, nil
}

func (e *estimator) literal(v any, path string) (int64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, nil // the builder reports it
	}
	if len(data) > e.l.MaxLiteralBytes {
		return 0, &LimitError{Limit: LimitLiteralBytes, Max: e.l.MaxLiteralBytes, Got: len(data), Path: path}
	}
	return int64(len(data)), nil
}

func (e *estimator) typed(t string, s map[string]any, path string, depth int) (int64, error) {
	switch t {
	case "string":
		return 3, nil
	case "integer", "number":
		return fixedSizes()[t], nil
	case "boolean":
		return 10, nil
	case "null":
		return 4, nil
	case "array":
		_, hi, err := bounds(s, "minItems", "maxItems", DefaultMaxItems, path)
		if err != nil {
			return 0, nil // the builder reports it
		}
		items, ok := s["items"]
		if !ok {
			items = true
		}
		item, err := e.schema(items, path+"/items", depth+1)
		if err != nil {
			return 0, err
		}
		// Per item: the item, its comma, and the "]" or more choice.
		return e.cap(int64(hi)*(item+3) + 4), nil
	case "object":
		props, _ := s["properties"].(map[string]any)
		if len(props) == 0 {
			return fixedSizes()["object"], nil
		}
		var n int64 = 2
		for k, v := range props {
			p, err := e.schema(v, path+"/properties/"+k, depth+1)
			if err != nil {
				return 0, err
			}
			n = e.cap(n + p + int64(len(k)) + 4)
		}
		return n, nil
	}
	return 0, nil // the builder reports it
}
