package nextaction

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Structured outputs (response_format) and tool arguments compile onto the
// same byte NFA as actions, so they close within the token budget too. The
// JSON Schema subset (README "Structured outputs" lists it for users):
//
//   - type (one or a list; inferred from the other keywords when absent),
//     enum and const of any JSON values (filtered by type), anyOf, oneOf
//     (branches that provably exclude one another: different types or
//     literal values, or a required property whose const or enum values
//     differ), allOf of one schema, $ref to "#" or a JSON pointer into the
//     document ($defs, definitions or anywhere), recursion expanded
//     maxRefRecursion levels deep (schema_types.go has the typed parts);
//   - strings: minLength, maxLength (characters), pattern (the regular
//     expressions of schema_pattern.go), format date, time, date-time,
//     uuid, email, ipv4; any UTF-8 and JSON escapes (strtext.go);
//   - numbers: minimum, maximum, exclusiveMinimum, exclusiveMaximum;
//   - arrays: items, prefixItems (or items as an array, with
//     additionalItems), minItems, maxItems, uniqueItems (at most one item);
//   - objects: properties in the order the schema declares them, required
//     ones always, optional ones as the model chooses, no undeclared ones;
//     without properties, a map of minProperties to maxProperties entries
//     whose values follow additionalProperties (or unevaluatedProperties);
//   - annotations, which are ignored.
//
// Anything else is an *UnsupportedError naming it. Unbounded strings take
// at most DefaultMaxString characters, unbounded arrays and maps at most
// DefaultMaxItems items, numbers at most 15 integer and 6 fraction digits,
// no exponent. Every construct is sound (what is written validates), not
// complete (a schema may allow more than the decoder writes).

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
// schema over a limit is a *LimitError, found by a counting pass before
// the grammar is built; an unsupported one an *UnsupportedError.
func CompileSchema(schema []byte, l SchemaLimits) (*Grammar, error) {
	l = l.withDefaults()
	if len(schema) > l.MaxBytes {
		return nil, &LimitError{Limit: LimitSchemaBytes, Max: l.MaxBytes, Got: len(schema), Path: "#"}
	}
	root, err := parseJV(schema)
	if err != nil {
		return nil, fmt.Errorf("schema is not valid JSON: %w", err)
	}
	return compileSchemaValue(root, l)
}

// compileSchemaValue compiles a parsed schema: first counting the nodes
// it would take (refusing it over MaxNodes before anything is
// allocated), then building it.
func compileSchemaValue(root *jv, l SchemaLimits) (*Grammar, error) {
	if _, err := estimateSchema(root, l); err != nil {
		return nil, err
	}
	c := newSchemaCompiler(&builder{maxNodes: l.MaxNodes}, l, root)
	p, err := c.schema(root, "#", 0)
	if err != nil {
		return nil, c.limitErr(err)
	}
	return c.finish(p)
}

// finish closes a compiled part into a grammar, explaining a grammar with
// no complete output.
func (c *schemaCompiler) finish(p part) (*Grammar, error) {
	g, err := c.b.compile(p)
	if c.b.over {
		return nil, &LimitError{Limit: LimitGrammarNodes, Max: c.l.MaxNodes, Got: c.l.MaxNodes + 1, Path: "#"}
	}
	if err != nil && c.cut {
		return nil, &UnsupportedError{Feature: fmt.Sprintf("recursive $ref with no finite instance within %d levels", maxRefRecursion), Path: "#"}
	}
	if err != nil {
		return nil, &UnsupportedError{Feature: "schema that no value satisfies", Path: "#"}
	}
	return g, nil
}

// estimateSchema counts the nodes the schema compiles to, without
// building them; counting stops just past MaxNodes, so it is linear in
// the schema whatever its bounds multiply to. It also enforces the
// structural limits.
func estimateSchema(root *jv, l SchemaLimits) (int64, error) {
	c := newSchemaCompiler(&builder{counting: true, maxNodes: l.MaxNodes}, l, root)
	_, err := c.schema(root, "#", 0)
	if err != nil {
		return 0, c.limitErr(err)
	}
	if c.b.over {
		return 0, &LimitError{Limit: LimitGrammarNodes, Max: l.MaxNodes, Got: c.b.count, Path: "#"}
	}
	return int64(c.b.count), nil
}

// JSONObjectGrammar accepts any JSON object (nesting depth at most 3).
func JSONObjectGrammar() (*Grammar, error) {
	b := &builder{}
	return b.compile(b.anyObject(jsonObjectDepth))
}

// maxRefRecursion is how many times one $ref target may be expanded inside
// itself; deeper, that branch matches nothing, so the decoder takes
// another (an empty array, null, another anyOf branch). A schema left with
// no complete output is refused.
const maxRefRecursion = 3

// schemaCompiler compiles one schema document onto a builder.
type schemaCompiler struct {
	b    *builder
	l    SchemaLimits
	root *jv
	// expanding counts, per $ref target, its expansions on the path being
	// compiled.
	expanding map[*jv]int
	// refs counts $ref expansions, bounded like nodes.
	refs int
	// cut is set when a recursive $ref was cut at maxRefRecursion.
	cut bool
}

func newSchemaCompiler(b *builder, l SchemaLimits, root *jv) *schemaCompiler {
	return &schemaCompiler{b: b, l: l, root: root, expanding: map[*jv]int{}}
}

// limitErr turns the builder's stop into the limit it broke.
func (c *schemaCompiler) limitErr(err error) error {
	if errors.Is(err, errOverNodes) {
		return &LimitError{Limit: LimitGrammarNodes, Max: c.l.MaxNodes, Got: c.l.MaxNodes + 1, Path: "#"}
	}
	return err
}

// annotations are keywords that do not constrain a value.
var annotations = map[string]bool{
	"title": true, "description": true, "default": true, "examples": true, "$schema": true, "$id": true,
	"$comment": true, "deprecated": true, "readOnly": true, "writeOnly": true, "discriminator": true,
	"$defs": true, "definitions": true, "contentMediaType": true, "contentEncoding": true,
}

// keywords are the constraining keywords the compiler honours.
var keywords = map[string]bool{
	"type": true, "enum": true, "const": true, "$ref": true, "anyOf": true, "oneOf": true, "allOf": true,
	"minLength": true, "maxLength": true, "pattern": true, "format": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true,
	"items": true, "prefixItems": true, "additionalItems": true, "minItems": true, "maxItems": true, "uniqueItems": true,
	"properties": true, "required": true, "additionalProperties": true, "unevaluatedProperties": true,
	"minProperties": true, "maxProperties": true, "nullable": true,
}

func isAnnotation(k string) bool { return annotations[k] || strings.HasPrefix(k, "x-") }

// schema compiles the schema v found at path, depth levels of properties
// and items deep.
func (c *schemaCompiler) schema(v *jv, path string, depth int) (part, error) {
	if depth > c.l.MaxDepth {
		return part{}, &LimitError{Limit: LimitSchemaDepth, Max: c.l.MaxDepth, Got: depth, Path: path}
	}
	if c.b.over {
		return part{}, errOverNodes
	}
	switch {
	case v.isBool(true):
		return c.b.anyValue(jsonObjectDepth), nil
	case v.isBool(false):
		return c.b.never(), nil
	case v.kind != jvObject:
		return part{}, &UnsupportedError{Feature: "schema that is a JSON " + v.typeName(), Path: path}
	}
	for _, k := range v.keys {
		if !keywords[k] && !isAnnotation(k) {
			return part{}, &UnsupportedError{Feature: k, Path: path}
		}
	}
	switch {
	case v.has("$ref"):
		return c.ref(v, path, depth)
	case v.has("allOf"):
		sub, subPath, err := onlyApplicator(v, "allOf", path)
		if err != nil {
			return part{}, err
		}
		if len(sub.vals) != 1 {
			return part{}, &UnsupportedError{Feature: "allOf of more than one schema", Path: path}
		}
		return c.schema(sub.vals[0], subPath+"/0", depth)
	case v.has("anyOf"), v.has("oneOf"):
		return c.union(v, path, depth)
	}
	types, err := schemaTypes(v, path)
	if err != nil {
		return part{}, err
	}
	if k := v.get("const"); k != nil {
		return c.literals([]*jv{k}, types, path+"/const")
	}
	if e := v.get("enum"); e != nil {
		if e.kind != jvArray || len(e.vals) == 0 {
			return part{}, &UnsupportedError{Feature: "enum that is not a non-empty array", Path: path}
		}
		if len(e.vals) > c.l.MaxEnum {
			return part{}, &LimitError{Limit: LimitEnumValues, Max: c.l.MaxEnum, Got: len(e.vals), Path: path + "/enum"}
		}
		return c.literals(e.vals, types, path+"/enum")
	}
	if types == nil {
		return c.b.anyValue(jsonObjectDepth), nil
	}
	var alts []part
	for _, t := range types {
		p, err := c.typed(t, v, path, depth)
		if err != nil {
			return part{}, err
		}
		alts = append(alts, p)
	}
	return c.b.alt(alts...), nil
}

// onlyApplicator returns v's array-valued keyword k, checking that v has
// no other constraining keyword beside it (JSON Schema would apply them
// together, which the compiler does not).
func onlyApplicator(v *jv, k, path string) (*jv, string, error) {
	sub := v.get(k)
	if sub.kind != jvArray || len(sub.vals) == 0 {
		return nil, "", &UnsupportedError{Feature: k + " that is not a non-empty array", Path: path}
	}
	for _, other := range v.keys {
		if other != k && !isAnnotation(other) {
			return nil, "", &UnsupportedError{Feature: fmt.Sprintf("%s beside %s", other, k), Path: path}
		}
	}
	return sub, path + "/" + k, nil
}

// ref compiles a $ref: the schema it points to, in place.
func (c *schemaCompiler) ref(v *jv, path string, depth int) (part, error) {
	for _, k := range v.keys {
		if k != "$ref" && !isAnnotation(k) {
			return part{}, &UnsupportedError{Feature: fmt.Sprintf("%s beside $ref", k), Path: path}
		}
	}
	r := v.get("$ref")
	if r.kind != jvString {
		return part{}, &UnsupportedError{Feature: "$ref that is not a string", Path: path}
	}
	target, tpath, err := c.resolve(r.str, path)
	if err != nil {
		return part{}, err
	}
	if c.refs++; c.refs > c.l.MaxNodes {
		return part{}, errOverNodes
	}
	if c.expanding[target] >= maxRefRecursion {
		c.cut = true
		return c.b.never(), nil
	}
	c.expanding[target]++
	defer func() { c.expanding[target]-- }()
	return c.schema(target, tpath, depth)
}

// resolve finds the schema a $ref names: "#" or a JSON pointer fragment
// ("#/$defs/Item") into this document.
func (c *schemaCompiler) resolve(ref, path string) (*jv, string, error) {
	if !strings.HasPrefix(ref, "#") {
		return nil, "", &UnsupportedError{Feature: fmt.Sprintf("$ref %q outside this schema (only #/... pointers)", ref), Path: path}
	}
	frag, err := url.PathUnescape(ref[1:])
	if err != nil || frag != "" && !strings.HasPrefix(frag, "/") {
		return nil, "", &UnsupportedError{Feature: fmt.Sprintf("$ref %q (only #/... pointers)", ref), Path: path}
	}
	cur := c.root
	if frag != "" {
		for _, tok := range strings.Split(frag[1:], "/") {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch cur.kind {
			case jvObject:
				cur = cur.get(tok)
			case jvArray:
				i, err := strconv.Atoi(tok)
				if err != nil || i < 0 || i >= len(cur.vals) {
					cur = nil
				} else {
					cur = cur.vals[i]
				}
			default:
				cur = nil
			}
			if cur == nil {
				return nil, "", &UnsupportedError{Feature: fmt.Sprintf("$ref %q to nothing", ref), Path: path}
			}
		}
	}
	return cur, "#" + frag, nil
}

// maxOneOf bounds the branches of a oneOf, whose check is quadratic.
const maxOneOf = 256

// union compiles anyOf or oneOf: one branch per schema. oneOf needs its
// branches to exclude one another, or an output could match two.
func (c *schemaCompiler) union(v *jv, path string, depth int) (part, error) {
	k := "anyOf"
	if v.has("oneOf") {
		k = "oneOf"
		if v.has("anyOf") {
			return part{}, &UnsupportedError{Feature: "anyOf beside oneOf", Path: path}
		}
	}
	sub, subPath, err := onlyApplicator(v, k, path)
	if err != nil {
		return part{}, err
	}
	if k == "oneOf" && len(sub.vals) > maxOneOf {
		// The disjointness check compares every pair of branches.
		return part{}, &UnsupportedError{Feature: fmt.Sprintf("oneOf of more than %d branches (use anyOf)", maxOneOf), Path: path}
	}
	if k == "oneOf" && !c.disjoint(sub.vals) {
		return part{}, &UnsupportedError{Feature: "oneOf whose branches may overlap (use anyOf, or tell the branches apart by type or by a const or enum property)", Path: path}
	}
	alts := make([]part, 0, len(sub.vals))
	for i, s := range sub.vals {
		p, err := c.schema(s, fmt.Sprintf("%s/%d", subPath, i), depth)
		if err != nil {
			return part{}, err
		}
		alts = append(alts, p)
	}
	return c.b.alt(alts...), nil
}

// literals is a choice of JSON values (const, enum), keeping those of the
// schema's types when it names any; a trie, so that many values sharing
// prefixes keep the decoder's state small.
func (c *schemaCompiler) literals(vals []*jv, types []string, path string) (part, error) {
	lits := make([]string, 0, len(vals))
	for i, x := range vals {
		lit := string(x.appendJSON(nil))
		if len(lit) > c.l.MaxLiteralBytes {
			return part{}, &LimitError{Limit: LimitLiteralBytes, Max: c.l.MaxLiteralBytes, Got: len(lit), Path: fmt.Sprintf("%s/%d", path, i)}
		}
		if typeAllows(types, x.typeName()) {
			lits = append(lits, lit)
		}
	}
	if len(lits) == 0 {
		return c.b.never(), nil
	}
	return c.b.oneOf(lits), nil
}

// typeAllows reports whether a value of JSON type t satisfies a schema of
// types (nil: any).
func typeAllows(types []string, t string) bool {
	if types == nil {
		return true
	}
	for _, x := range types {
		if x == t || x == "number" && t == "integer" {
			return true
		}
	}
	return false
}

var validTypes = map[string]bool{"string": true, "integer": true, "number": true, "boolean": true, "null": true, "array": true, "object": true}

// schemaTypes is the schema's type keyword as a list; without one, the
// type its other keywords imply, or nil (any) for enum, const and empty
// schemas.
func schemaTypes(s *jv, path string) ([]string, error) {
	types, err := declaredTypes(s, path)
	if err != nil {
		return nil, err
	}
	return nullable(s, types, path)
}

// nullable applies OpenAPI 3.0's "nullable": true (which the OpenAI SDKs'
// Zod helpers write for a nullable primitive): null joins the schema's
// types. Without types (any value) there is nothing to add; false changes
// nothing.
func nullable(s *jv, types []string, path string) ([]string, error) {
	n := s.get("nullable")
	switch {
	case n == nil || n.isBool(false):
		return types, nil
	case !n.isBool(true):
		return nil, &UnsupportedError{Feature: "nullable that is not a boolean", Path: path}
	case len(types) == 0 || slices.Contains(types, "null"):
		return types, nil
	}
	return append(slices.Clip(types), "null"), nil
}

// declaredTypes is the types s names, or infers from its keywords (nil:
// any value).
func declaredTypes(s *jv, path string) ([]string, error) {
	t := s.get("type")
	if t == nil {
		for _, g := range []struct {
			typ  string
			keys []string
		}{
			{"object", []string{"properties", "additionalProperties", "unevaluatedProperties", "required", "minProperties", "maxProperties"}},
			{"array", []string{"items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems"}},
			{"string", []string{"minLength", "maxLength", "pattern", "format"}},
			{"number", []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}},
		} {
			for _, k := range g.keys {
				if s.has(k) {
					return []string{g.typ}, nil
				}
			}
		}
		return nil, nil
	}
	var out []string
	switch t.kind {
	case jvString:
		out = []string{t.str}
	case jvArray:
		for _, x := range t.vals {
			if x.kind != jvString {
				return nil, &UnsupportedError{Feature: "type list with a non-string", Path: path}
			}
			out = append(out, x.str)
		}
	}
	if len(out) == 0 {
		return nil, &UnsupportedError{Feature: "type that is not a name or a list of names", Path: path}
	}
	for _, x := range out {
		if !validTypes[x] {
			return nil, &UnsupportedError{Feature: "type " + x, Path: path}
		}
	}
	return out, nil
}

// typed compiles the value of one type t under schema s.
func (c *schemaCompiler) typed(t string, s *jv, path string, depth int) (part, error) {
	switch t {
	case "string":
		return c.str(s, path)
	case "integer", "number":
		return c.number(t == "integer", s, path)
	case "boolean":
		return c.b.alt(c.b.lit("true"), c.b.lit("false")), nil
	case "null":
		return c.b.lit("null"), nil
	case "array":
		return c.array(s, path, depth)
	}
	return c.object(s, path, depth)
}

// str compiles a string: free JSON text within minLength and maxLength,
// or a pattern or format.
func (c *schemaCompiler) str(s *jv, path string) (part, error) {
	lo, hi, hasMax, err := bounds(s, "minLength", "maxLength", DefaultMaxString, path)
	if err != nil {
		return part{}, err
	}
	pattern, ppath := "", path+"/pattern"
	if f := s.get("format"); f != nil {
		if f.kind != jvString || formatPatterns[f.str] == "" {
			return part{}, &UnsupportedError{Feature: fmt.Sprintf("format %s (supported: %s)", f.appendJSON(nil), supportedFormats), Path: path}
		}
		if s.has("pattern") {
			return part{}, &UnsupportedError{Feature: "pattern beside format", Path: path}
		}
		pattern, ppath = formatPatterns[f.str], path+"/format"
	}
	if p := s.get("pattern"); p != nil {
		if p.kind != jvString {
			return part{}, &UnsupportedError{Feature: "pattern that is not a string", Path: path}
		}
		pattern = p.str
	}
	if pattern == "" {
		return c.b.seq(c.b.lit(`"`), c.b.jsonText(lo, hi), c.b.lit(`"`)), nil
	}
	if !hasMax {
		hi = -1 // no maximum beyond the pattern's own
	}
	body, err := c.b.pattern(pattern, lo, hi, ppath)
	if err != nil {
		return part{}, err
	}
	return c.b.seq(c.b.lit(`"`), body, c.b.lit(`"`)), nil
}

// bounds reads a pair of size keywords (minLength/maxLength,
// minItems/maxItems, ...): 0..4096 each, the maximum defMax when absent
// (or the minimum, when that is larger). hasMax reports whether the
// schema gave the maximum.
func bounds(s *jv, minKey, maxKey string, defMax int, path string) (lo, hi int, hasMax bool, err error) {
	lo, hi = 0, defMax
	for _, k := range []string{minKey, maxKey} {
		v := s.get(k)
		if v == nil {
			continue
		}
		i, perr := strconv.ParseInt(v.str, 10, 64)
		if v.kind != jvNumber || perr != nil || i < 0 || i > 4096 {
			return 0, 0, false, &UnsupportedError{Feature: fmt.Sprintf("%s outside 0..4096", k), Path: path}
		}
		if k == minKey {
			lo = int(i)
		} else {
			hi, hasMax = int(i), true
		}
	}
	if !hasMax && lo > hi {
		hi = lo
	}
	if lo > hi {
		return 0, 0, false, &UnsupportedError{Feature: minKey + " above " + maxKey, Path: path}
	}
	return lo, hi, hasMax, nil
}

// errOverNodes stops building once the builder's cap is reached (the
// caller reports the LimitError).
var errOverNodes = errors.New("grammar over its node limit")

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
		b.seq(b.lit(`"`), b.jsonText(0, DefaultMaxString), b.lit(`"`)),
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
		return b.seq(b.lit(`"`), b.jsonText(1, 64), b.lit(`":`), b.anyValue(depth))
	}
	members := b.seq(pair(), b.star(b.seq(b.lit(","), pair())))
	return b.seq(b.lit("{"), b.opt(members), b.lit("}"))
}

func (b *builder) anyArray(depth int) part {
	items := b.seq(b.anyValue(depth), b.star(b.seq(b.lit(","), b.anyValue(depth))))
	return b.seq(b.lit("["), b.opt(items), b.lit("]"))
}
