package nextaction

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Structured outputs (response_format) compile onto the same byte NFA as
// actions, so they close within the token budget too. Supported JSON Schema:
// type (one or a list), properties (every property is written, in sorted
// key order), required, additionalProperties false, items, minItems,
// maxItems, enum, const, minLength, maxLength, and annotations (title,
// description, default, examples, $schema). Strings are printable ASCII
// without '"' or '\'. Unbounded strings take at most DefaultMaxString bytes,
// unbounded arrays at most DefaultMaxItems items, numbers at most 15 integer
// and 6 fraction digits, no exponent.

// Bounds used where a schema leaves a size open.
const (
	DefaultMaxString = 256
	DefaultMaxItems  = 8
	// jsonObjectDepth bounds nesting for response_format json_object.
	jsonObjectDepth = 3
)

// SchemaLimits bound what a JSON schema may ask of the compiler, so that
// compiling is linear in the schema and bounded in memory: a small schema
// must not unroll into millions of nodes (arrays are unrolled item by item).
type SchemaLimits struct {
	// MaxBytes bounds the schema's JSON text.
	MaxBytes int
	// MaxDepth bounds the nesting of schemas (properties, items).
	MaxDepth int
	// MaxEnum bounds the values of one enum.
	MaxEnum int
	// MaxLiteralBytes bounds one const or enum value, as JSON text.
	MaxLiteralBytes int
	// MaxNodes bounds the compiled grammar: estimated from the schema
	// before anything is built, then enforced while building.
	MaxNodes int
}

// DefaultSchemaLimits are the server's defaults.
var DefaultSchemaLimits = SchemaLimits{MaxBytes: 64 << 10, MaxDepth: 16, MaxEnum: 1024, MaxLiteralBytes: 4096, MaxNodes: 250_000}

// withDefaults fills zero fields from DefaultSchemaLimits.
func (l SchemaLimits) withDefaults() SchemaLimits {
	d := DefaultSchemaLimits
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxEnum <= 0 {
		l.MaxEnum = d.MaxEnum
	}
	if l.MaxLiteralBytes <= 0 {
		l.MaxLiteralBytes = d.MaxLiteralBytes
	}
	if l.MaxNodes <= 0 {
		l.MaxNodes = d.MaxNodes
	}
	return l
}

// Names of the schema limits, as LimitError.Limit gives them.
const (
	LimitSchemaBytes  = "schema size in bytes"
	LimitSchemaDepth  = "schema nesting depth"
	LimitEnumValues   = "values of one enum"
	LimitLiteralBytes = "bytes of one const or enum value"
	LimitGrammarNodes = "compiled grammar size in nodes"
)

// LimitError is a schema over one of its SchemaLimits.
type LimitError struct {
	Limit string // one of the Limit* names
	Max   int
	// Got is the size found; for LimitGrammarNodes a lower bound of the
	// estimate (counting stops past the limit).
	Got  int
	Path string
}

func (e *LimitError) Error() string {
	if e.Limit == LimitGrammarNodes {
		return fmt.Sprintf("the schema exceeds the limit on %s at %s: more than %d", e.Limit, e.Path, e.Max)
	}
	return fmt.Sprintf("the schema exceeds the limit on %s at %s: %d, at most %d", e.Limit, e.Path, e.Got, e.Max)
}

// UnsupportedError names a schema feature the compiler does not handle.
type UnsupportedError struct {
	Feature string
	Path    string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("JSON schema feature %q (at %s) is not supported", e.Feature, e.Path)
}

// SchemaGrammar compiles a JSON schema under DefaultSchemaLimits.
func SchemaGrammar(schema []byte) (*Grammar, error) {
	return CompileSchema(schema, DefaultSchemaLimits)
}

// CompileSchema compiles a JSON schema under l (zero fields: defaults). A
// schema over a limit is a *LimitError, found before the grammar is built;
// an unsupported one an *UnsupportedError.
func CompileSchema(schema []byte, l SchemaLimits) (*Grammar, error) {
	l = l.withDefaults()
	if len(schema) > l.MaxBytes {
		return nil, &LimitError{Limit: LimitSchemaBytes, Max: l.MaxBytes, Got: len(schema), Path: "#"}
	}
	var root any
	if err := jsonUnmarshalNumber(schema, &root); err != nil {
		return nil, fmt.Errorf("schema is not valid JSON: %w", err)
	}
	est := &estimator{l: l}
	n, err := est.schema(root, "#", 0)
	if err != nil {
		return nil, err
	}
	if n > int64(l.MaxNodes) {
		return nil, &LimitError{Limit: LimitGrammarNodes, Max: l.MaxNodes, Got: int(min(n, math.MaxInt32)), Path: "#"}
	}
	b := &builder{maxNodes: l.MaxNodes}
	p, err := b.schema(root, "#")
	if err != nil {
		return nil, err
	}
	g, err := b.compile(p)
	if b.over {
		return nil, &LimitError{Limit: LimitGrammarNodes, Max: l.MaxNodes, Got: l.MaxNodes + 1, Path: "#"}
	}
	return g, err
}

// JSONObjectGrammar accepts any JSON object (nesting depth at most 3).
func JSONObjectGrammar() (*Grammar, error) {
	b := &builder{}
	return b.compile(b.anyObject(jsonObjectDepth))
}

var annotations = map[string]bool{"title": true, "description": true, "default": true, "examples": true, "$schema": true, "$id": true, "$comment": true}

func (b *builder) schema(v any, path string) (part, error) {
	if v == true {
		return b.anyValue(jsonObjectDepth), nil
	}
	s, ok := v.(map[string]any)
	if !ok {
		return part{}, &UnsupportedError{Feature: fmt.Sprintf("schema of JSON type %T", v), Path: path}
	}
	for k := range s {
		switch k {
		case "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
			"enum", "const", "minLength", "maxLength":
		default:
			if !annotations[k] {
				return part{}, &UnsupportedError{Feature: k, Path: path}
			}
		}
	}
	if b.over {
		return part{}, errOverNodes
	}
	if c, ok := s["const"]; ok {
		lit, err := literalJSON(c, path+"/const")
		if err != nil {
			return part{}, err
		}
		return b.lit(lit), nil
	}
	if e, ok := s["enum"]; ok {
		vals, ok := e.([]any)
		if !ok || len(vals) == 0 {
			return part{}, &UnsupportedError{Feature: "enum that is not a non-empty array", Path: path}
		}
		lits := make([]string, len(vals))
		for i, x := range vals {
			lit, err := literalJSON(x, fmt.Sprintf("%s/enum/%d", path, i))
			if err != nil {
				return part{}, err
			}
			lits[i] = lit
		}
		// A trie of the values: an enum of many values sharing prefixes
		// keeps the decoder's state small.
		return b.oneOf(lits), nil
	}
	types, err := schemaTypes(s, path)
	if err != nil {
		return part{}, err
	}
	var alts []part
	for _, t := range types {
		p, err := b.typed(t, s, path)
		if err != nil {
			return part{}, err
		}
		alts = append(alts, p)
	}
	return b.alt(alts...), nil
}

func schemaTypes(s map[string]any, path string) ([]string, error) {
	switch t := s["type"].(type) {
	case string:
		return []string{t}, nil
	case []any:
		var out []string
		for _, x := range t {
			str, ok := x.(string)
			if !ok {
				return nil, &UnsupportedError{Feature: "non-string type", Path: path}
			}
			out = append(out, str)
		}
		if len(out) > 0 {
			return out, nil
		}
	case nil:
		if _, ok := s["properties"]; ok {
			return []string{"object"}, nil
		}
		return nil, &UnsupportedError{Feature: "schema without type", Path: path}
	}
	return nil, &UnsupportedError{Feature: "type", Path: path}
}

func (b *builder) typed(t string, s map[string]any, path string) (part, error) {
	switch t {
	case "string":
		lo, hi, err := bounds(s, "minLength", "maxLength", DefaultMaxString, path)
		if err != nil {
			return part{}, err
		}
		return b.seq(b.lit(`"`), b.free(lo, hi), b.lit(`"`)), nil
	case "integer":
		return b.integer(), nil
	case "number":
		return b.seq(b.integer(), b.opt(b.seq(b.lit("."), b.digits(1, 6)))), nil
	case "boolean":
		return b.alt(b.lit("true"), b.lit("false")), nil
	case "null":
		return b.lit("null"), nil
	case "array":
		return b.array(s, path)
	case "object":
		return b.object(s, path)
	}
	return part{}, &UnsupportedError{Feature: "type " + t, Path: path}
}

func bounds(s map[string]any, minKey, maxKey string, defMax int, path string) (int, int, error) {
	lo, hi := 0, defMax
	for key, dst := range map[string]*int{minKey: &lo, maxKey: &hi} {
		if v, ok := s[key]; ok {
			n, ok := v.(json.Number)
			i, err := n.Int64()
			if !ok || err != nil || i < 0 || i > 4096 {
				return 0, 0, &UnsupportedError{Feature: fmt.Sprintf("%s outside 0..4096", key), Path: path}
			}
			*dst = int(i)
		}
	}
	if _, ok := s[maxKey]; !ok && lo > hi {
		hi = lo
	}
	if lo > hi {
		return 0, 0, &UnsupportedError{Feature: minKey + " above " + maxKey, Path: path}
	}
	return lo, hi, nil
}

func (b *builder) array(s map[string]any, path string) (part, error) {
	lo, hi, err := bounds(s, "minItems", "maxItems", DefaultMaxItems, path)
	if err != nil {
		return part{}, err
	}
	items, ok := s["items"]
	if !ok {
		items = true
	}
	item := func() (part, error) { return b.schema(items, path+"/items") }
	if hi == 0 {
		return b.lit("[]"), nil
	}
	// [ item (, item){lo-1 mandatory} (, item)? ... ]: built from the end.
	tail := b.lit("]")
	for i := hi - 1; i >= 1; i-- {
		it, err := item()
		if err != nil {
			return part{}, err
		}
		more := b.seq(b.lit(","), it, tail)
		if i >= lo {
			tail = b.alt(b.lit("]"), more)
		} else {
			tail = more
		}
	}
	first, err := item()
	if err != nil {
		return part{}, err
	}
	body := b.seq(first, tail)
	if lo == 0 {
		return b.seq(b.lit("["), b.alt(b.lit("]"), body)), nil
	}
	return b.seq(b.lit("["), body), nil
}

func (b *builder) object(s map[string]any, path string) (part, error) {
	props, _ := s["properties"].(map[string]any)
	if ap, ok := s["additionalProperties"]; ok && ap != false {
		return part{}, &UnsupportedError{Feature: "additionalProperties other than false", Path: path}
	}
	if len(props) == 0 {
		if _, ok := s["additionalProperties"]; ok {
			return b.lit("{}"), nil
		}
		return b.anyObject(jsonObjectDepth - 1), nil
	}
	if req, ok := s["required"].([]any); ok {
		for _, r := range req {
			if name, _ := r.(string); props[name] == nil {
				return part{}, &UnsupportedError{Feature: fmt.Sprintf("required property %v without a schema", r), Path: path}
			}
		}
	}
	keys := make([]string, 0, len(props))
	for k := range props {
		if !safeText(k) {
			return part{}, &UnsupportedError{Feature: fmt.Sprintf("property name %q", k), Path: path}
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ps := []part{b.lit("{")}
	for i, k := range keys {
		v, err := b.schema(props[k], path+"/properties/"+k)
		if err != nil {
			return part{}, err
		}
		sep := ","
		if i == 0 {
			sep = ""
		}
		ps = append(ps, b.lit(sep+`"`+k+`":`), v)
	}
	return b.seq(append(ps, b.lit("}"))...), nil
}

// errOverNodes stops building once the builder's cap is reached (the
// caller reports the LimitError).
var errOverNodes = errors.New("grammar over its node limit")

// literalJSON is the exact JSON text of a const or enum value.
func literalJSON(v any, path string) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", &UnsupportedError{Feature: "unencodable value", Path: path}
	}
	if str, ok := v.(string); ok && !safeText(str) {
		return "", &UnsupportedError{Feature: "string value with '\"', '\\' or non-printable characters", Path: path}
	}
	return string(data), nil
}

func safeText(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTextByte(s[i]) {
			return false
		}
	}
	return true
}

// digits matches between lo and hi decimal digits.
func (b *builder) digits(lo, hi int) part {
	var ps []part
	for i := 0; i < hi; i++ {
		d := b.class("0123456789")
		if i >= lo {
			d = b.opt(d)
		}
		ps = append(ps, d)
	}
	return b.seq(ps...)
}

func (b *builder) integer() part {
	return b.seq(b.opt(b.lit("-")), b.alt(b.lit("0"), b.seq(b.class("123456789"), b.digits(0, 14))))
}

// anyValue is any JSON value nested at most depth levels.
func (b *builder) anyValue(depth int) part {
	alts := []part{
		b.seq(b.lit(`"`), b.free(0, DefaultMaxString), b.lit(`"`)),
		b.seq(b.integer(), b.opt(b.seq(b.lit("."), b.digits(1, 6)))),
		b.lit("true"), b.lit("false"), b.lit("null"),
	}
	if depth > 0 {
		alts = append(alts, b.anyObject(depth-1), b.anyArray(depth-1))
	}
	return b.alt(alts...)
}

func (b *builder) anyObject(depth int) part {
	pair := func() part {
		return b.seq(b.lit(`"`), b.free(1, 64), b.lit(`":`), b.anyValue(depth))
	}
	members := b.seq(pair(), b.star(b.seq(b.lit(","), pair())))
	return b.seq(b.lit("{"), b.opt(members), b.lit("}"))
}

func (b *builder) anyArray(depth int) part {
	items := b.seq(b.anyValue(depth), b.star(b.seq(b.lit(","), b.anyValue(depth))))
	return b.seq(b.lit("["), b.opt(items), b.lit("]"))
}

// jsonUnmarshalNumber decodes data as the compiler does (numbers kept as
// json.Number).
func jsonUnmarshalNumber(data []byte, v *any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}
