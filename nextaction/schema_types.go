package nextaction

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The typed parts of the schema compiler: numbers with bounds, arrays,
// objects, and the disjointness check of oneOf. Every construct is sound
// (what it writes validates) though not complete (a bounded number is
// written with a fraction only where the fraction cannot cross a bound).

// maxIntDigits bounds the integer part of a number the decoder writes.
const maxIntDigits = 15

// maxInt is the largest integer part written: 15 nines.
const maxInt = int64(999_999_999_999_999)

// number compiles an integer or a number with optional minimum, maximum,
// exclusiveMinimum and exclusiveMaximum (draft 6+ numbers). A number is
// written as an integer, or as one with 1 to 6 fraction digits, the last
// non-zero, so that "I.f" lies strictly between I and I+1.
func (c *schemaCompiler) number(integer bool, s *jv, path string) (part, error) {
	lo, hi := -math.MaxFloat64, math.MaxFloat64
	loEx, hiEx := false, false
	bounded := false
	for _, k := range []string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} {
		v := s.get(k)
		if v == nil {
			continue
		}
		f, err := strconv.ParseFloat(v.str, 64)
		if v.kind != jvNumber || err != nil || math.IsInf(f, 0) {
			return part{}, &UnsupportedError{Feature: k + " that is not a finite number", Path: path}
		}
		bounded = true
		switch k {
		case "minimum":
			if f > lo || f == lo && loEx {
				lo, loEx = f, false
			}
		case "exclusiveMinimum":
			if f >= lo {
				lo, loEx = f, true
			}
		case "maximum":
			if f < hi || f == hi && hiEx {
				hi, hiEx = f, false
			}
		case "exclusiveMaximum":
			if f <= hi {
				hi, hiEx = f, true
			}
		}
	}
	frac := func() part { return c.b.seq(c.b.lit("."), c.b.digits(0, 5), c.b.class("123456789")) }
	if !bounded {
		if integer {
			return c.b.integer(), nil
		}
		return c.b.seq(c.b.integer(), c.b.opt(frac())), nil
	}
	// Integer values in [L, H].
	L, H := clampInt(math.Ceil(lo)), clampInt(math.Floor(hi))
	if loEx && float64(L) == lo {
		L++
	}
	if hiEx && float64(H) == hi {
		H--
	}
	// I.f needs I >= 0 with I >= lo and I+1 <= hi, or -K.f with K >= 0,
	// -K <= hi and -K-1 >= lo.
	p0, p1 := max(0, clampInt(math.Ceil(lo))), clampInt(math.Floor(hi))-1
	k0, k1 := max(0, clampInt(math.Ceil(-hi))), clampInt(math.Floor(-lo))-1
	if integer {
		p0, p1, k0, k1 = 1, 0, 1, 0
	}
	if L > H && p0 > p1 && k0 > k1 {
		return part{}, &UnsupportedError{Feature: "bounds that hold no integer and no whole unit interval (the decoder writes integers, and I.f only between integers within the bounds)", Path: path}
	}
	alts := []part{c.b.intRange(L, H)}
	if !integer {
		if p0 <= p1 {
			alts = append(alts, c.b.seq(c.b.natRange(p0, p1), frac()))
		}
		if k0 <= k1 {
			alts = append(alts, c.b.seq(c.b.lit("-"), c.b.natRange(k0, k1), frac()))
		}
	}
	return c.b.alt(alts...), nil
}

// clampInt converts f to an int64 within ±(maxInt+1).
func clampInt(f float64) int64 {
	switch {
	case f > float64(maxInt):
		return maxInt + 1
	case f < -float64(maxInt):
		return -maxInt - 1
	}
	return int64(f)
}

// intRange matches the decimal integers in [lo, hi] (no leading zeros, no
// "-0"), within ±maxInt; an empty range matches nothing.
func (b *builder) intRange(lo, hi int64) part {
	lo, hi = max(lo, -maxInt), min(hi, maxInt)
	var alts []part
	if lo < 0 {
		// -v for v in [max(1, -hi), -lo].
		if v0 := max(1, -hi); v0 <= -lo {
			alts = append(alts, b.seq(b.lit("-"), b.natRange(v0, -lo)))
		}
	}
	if hi >= 0 && max(lo, 0) <= hi {
		alts = append(alts, b.natRange(max(lo, 0), hi))
	}
	if len(alts) == 0 {
		return b.never()
	}
	return b.alt(alts...)
}

// natRange matches the naturals in [lo, hi] (0 <= lo <= hi <= maxInt), one
// alternative per number of digits.
func (b *builder) natRange(lo, hi int64) part {
	hi = min(hi, maxInt)
	if lo > hi {
		return b.never()
	}
	var alts []part
	for d, pow := 1, int64(1); d <= maxIntDigits && (d == 1 || pow <= hi); d, pow = d+1, pow*10 {
		first, last := max(lo, pow), min(hi, pow*10-1)
		if d == 1 {
			first = lo
		}
		if first <= last {
			alts = append(alts, b.digitRange(strconv.FormatInt(first, 10), strconv.FormatInt(last, 10)))
		}
	}
	return b.alt(alts...)
}

// digitRange matches the digit strings of one length between lo and hi.
func (b *builder) digitRange(lo, hi string) part {
	if lo == "" {
		return b.empty()
	}
	if lo[0] == hi[0] {
		return b.seq(b.lit(lo[:1]), b.digitRange(lo[1:], hi[1:]))
	}
	n := len(lo) - 1
	if strings.Trim(lo[1:], "0") == "" && strings.Trim(hi[1:], "9") == "" {
		return b.seq(b.class(digitSpan(lo[0], hi[0])), b.digits(n, n))
	}
	alts := []part{b.seq(b.lit(lo[:1]), b.digitRange(lo[1:], strings.Repeat("9", n)))}
	if lo[0]+1 <= hi[0]-1 {
		alts = append(alts, b.seq(b.class(digitSpan(lo[0]+1, hi[0]-1)), b.digits(n, n)))
	}
	alts = append(alts, b.seq(b.lit(hi[:1]), b.digitRange(strings.Repeat("0", n), hi[1:])))
	return b.alt(alts...)
}

// digitSpan is the digits from a to z.
func digitSpan(a, z byte) string {
	var sb strings.Builder
	for d := a; d <= z; d++ {
		sb.WriteByte(d)
	}
	return sb.String()
}

// array compiles an array: items (a schema, or the draft 4-7 tuple form
// with additionalItems), prefixItems, minItems, maxItems, uniqueItems (an
// array of unique items is written with at most one item).
func (c *schemaCompiler) array(s *jv, path string, depth int) (part, error) {
	lo, hi, hasMax, err := bounds(s, "minItems", "maxItems", DefaultMaxItems, path)
	if err != nil {
		return part{}, err
	}
	var prefix []*jv
	rest, restKey := s.get("items"), "items"
	if p := s.get("prefixItems"); p != nil {
		if p.kind != jvArray {
			return part{}, &UnsupportedError{Feature: "prefixItems that is not an array", Path: path}
		}
		prefix = p.vals
	} else if rest != nil && rest.kind == jvArray {
		prefix, rest, restKey = rest.vals, s.get("additionalItems"), "additionalItems"
	}
	if rest == nil {
		rest = &jv{kind: jvBool, str: "true"}
	}
	if len(prefix) > 0 && !hasMax {
		hi = max(lo, len(prefix)) // further items are allowed, not needed
	}
	if rest.isBool(false) {
		hi = min(hi, len(prefix))
	}
	if u := s.get("uniqueItems"); u.isBool(true) {
		if lo > 1 {
			return part{}, &UnsupportedError{Feature: "uniqueItems with minItems above 1", Path: path}
		}
		hi = min(hi, 1)
	}
	if lo > hi {
		return part{}, &UnsupportedError{Feature: "minItems above the items the array may hold", Path: path}
	}
	item := func(i int) (part, error) {
		if c.b.over {
			return part{}, errOverNodes
		}
		if i < len(prefix) {
			return c.schema(prefix[i], fmt.Sprintf("%s/prefixItems/%d", path, i), depth+1)
		}
		return c.schema(rest, path+"/"+restKey, depth+1)
	}
	return c.list('[', ']', lo, hi, item)
}

// list is open, lo to hi items separated by commas, close: one closing
// node shared by every length, so that the parts' dangling ends stay one
// (an alt per optional item would otherwise repeat them all).
func (c *schemaCompiler) list(open, close byte, lo, hi int, item func(i int) (part, error)) (part, error) {
	b := c.b
	end := b.lit(string(close))
	start := end.start
	if hi > 0 {
		tail := end.start
		for i := hi - 1; i >= 1; i-- {
			it, err := item(i)
			if err != nil {
				return part{}, err
			}
			comma := b.lit(",")
			b.patch(comma, it.start)
			b.patch(it, tail)
			if tail = comma.start; i >= lo {
				tail = b.split(end.start, comma.start)
			}
		}
		first, err := item(0)
		if err != nil {
			return part{}, err
		}
		b.patch(first, tail)
		if start = first.start; lo == 0 {
			start = b.split(end.start, first.start)
		}
	}
	o := b.lit(string(open))
	b.patch(o, start)
	return part{start: o.start, holes: end.holes}, nil
}

// object compiles an object. With properties: the declared properties in
// the order the schema declares them, each required one always, each
// optional one written or left out as the model chooses, and no others
// (additionalProperties allows others, it never requires them). Without:
// a map of minProperties to maxProperties (default DefaultMaxItems)
// members whose values follow additionalProperties (any value when
// absent), or {} when it is false.
func (c *schemaCompiler) object(s *jv, path string, depth int) (part, error) {
	ap := s.get("additionalProperties")
	if ap == nil {
		ap = s.get("unevaluatedProperties")
	}
	props := s.get("properties")
	if props != nil && props.kind != jvObject {
		return part{}, &UnsupportedError{Feature: "properties that is not an object", Path: path}
	}
	if props == nil || len(props.keys) == 0 {
		return c.mapObject(s, ap, path, depth)
	}
	required, err := requiredSet(s, props, path)
	if err != nil {
		return part{}, err
	}
	minP, maxP, _, err := bounds(s, "minProperties", "maxProperties", len(props.keys), path)
	if err != nil {
		return part{}, err
	}
	if maxP < len(props.keys) {
		return part{}, &UnsupportedError{Feature: "maxProperties below the number of properties", Path: path}
	}
	if minP > len(required) {
		// Writing every property is the simple way to reach the minimum.
		for _, k := range props.keys {
			required[k] = true
		}
	}
	if minP > len(props.keys) {
		return part{}, &UnsupportedError{Feature: "minProperties above the number of properties", Path: path}
	}
	// restNone and restSome start what follows once properties i..
	// remain, with no member written before them or some (then the next
	// needs a comma). Built from the end; each value is compiled once and
	// shared by both; every path ends at one "}".
	b := c.b
	end := b.lit("}")
	restNone, restSome := end.start, end.start
	for i := len(props.keys) - 1; i >= 0; i-- {
		k := props.keys[i]
		v, err := c.schema(props.vals[i], path+"/properties/"+k, depth+1)
		if err != nil {
			return part{}, err
		}
		b.patch(v, restSome)
		key := string(appendJSONString(nil, k))
		first, withComma := b.lit(key+":"), b.lit(","+key+":")
		b.patch(first, v.start)
		b.patch(withComma, v.start)
		if required[k] {
			restNone, restSome = first.start, withComma.start
		} else {
			restNone, restSome = b.split(first.start, restNone), b.split(withComma.start, restSome)
		}
	}
	o := b.lit("{")
	b.patch(o, restNone)
	return part{start: o.start, holes: end.holes}, nil
}

// requiredSet is the object's required names, each a declared property.
func requiredSet(s, props *jv, path string) (map[string]bool, error) {
	out := map[string]bool{}
	r := s.get("required")
	if r == nil {
		return out, nil
	}
	if r.kind != jvArray {
		return nil, &UnsupportedError{Feature: "required that is not an array", Path: path}
	}
	for _, x := range r.vals {
		if x.kind != jvString || !props.has(x.str) {
			return nil, &UnsupportedError{Feature: fmt.Sprintf("required property %s without a schema in properties", x.appendJSON(nil)), Path: path}
		}
		out[x.str] = true
	}
	return out, nil
}

// mapObject is an object without declared properties: {} when
// additionalProperties is false, else minProperties to maxProperties
// members with keys of 1 to 64 characters (not checked for uniqueness)
// and values of the additionalProperties schema.
func (c *schemaCompiler) mapObject(s, ap *jv, path string, depth int) (part, error) {
	if ap.isBool(false) {
		if s.has("required") {
			return part{}, &UnsupportedError{Feature: "required property without a schema in properties", Path: path}
		}
		return c.b.lit("{}"), nil
	}
	if s.has("required") {
		return part{}, &UnsupportedError{Feature: "required without properties", Path: path}
	}
	lo, hi, _, err := bounds(s, "minProperties", "maxProperties", DefaultMaxItems, path)
	if err != nil {
		return part{}, err
	}
	if ap == nil {
		ap = &jv{kind: jvBool, str: "true"}
	}
	member := func(int) (part, error) {
		if c.b.over {
			return part{}, errOverNodes
		}
		v, err := c.schema(ap, path+"/additionalProperties", depth+1)
		if err != nil {
			return part{}, err
		}
		return c.b.seq(c.b.lit(`"`), c.b.jsonText(1, 64), c.b.lit(`":`), v), nil
	}
	return c.list('{', '}', lo, hi, member)
}

// disjoint reports whether no JSON value can match two of the branches:
// each pair differs in type, in its const or enum values, or in the const
// or enum values of a property both require (a discriminator).
func (c *schemaCompiler) disjoint(branches []*jv) bool {
	infos := make([]branchInfo, len(branches))
	for i, b := range branches {
		infos[i] = c.info(b)
	}
	for i := range infos {
		for j := i + 1; j < len(infos); j++ {
			if !infos[i].excludes(&infos[j]) {
				return false
			}
		}
	}
	return true
}

// branchInfo is what disjoint knows of a branch: its types (nil: any),
// its literal values (nil: any), and its discriminators (required
// properties with const or enum values).
type branchInfo struct {
	types []string
	lits  map[string]bool
	disc  map[string]map[string]bool
}

// info reads a branch, following $ref a few hops.
func (c *schemaCompiler) info(v *jv) branchInfo {
	for hop := 0; hop < 8 && v != nil && v.has("$ref"); hop++ {
		r := v.get("$ref")
		if r.kind != jvString {
			return branchInfo{}
		}
		t, _, err := c.resolve(r.str, "#")
		if err != nil {
			return branchInfo{}
		}
		v = t
	}
	var bi branchInfo
	if v == nil || v.kind != jvObject {
		return bi
	}
	bi.types, _ = schemaTypes(v, "#")
	bi.lits = literalSet(v)
	if props := v.get("properties"); props != nil && props.kind == jvObject {
		req, err := requiredSet(v, props, "#")
		if err == nil {
			for k := range req {
				if l := literalSet(props.get(k)); l != nil {
					if bi.disc == nil {
						bi.disc = map[string]map[string]bool{}
					}
					bi.disc[k] = l
				}
			}
		}
	}
	if bi.lits != nil && bi.types == nil {
		for l := range bi.lits {
			x, err := parseJV([]byte(l))
			if err == nil && !strings.Contains(strings.Join(bi.types, ","), x.typeName()) {
				bi.types = append(bi.types, x.typeName())
			}
		}
	}
	return bi
}

// literalSet is a schema's const or enum values as JSON text, or nil.
func literalSet(v *jv) map[string]bool {
	if v == nil || v.kind != jvObject {
		return nil
	}
	var vals []*jv
	if k := v.get("const"); k != nil {
		vals = []*jv{k}
	} else if e := v.get("enum"); e != nil && e.kind == jvArray {
		vals = e.vals
	} else {
		return nil
	}
	out := make(map[string]bool, len(vals))
	for _, x := range vals {
		out[literalKey(x)] = true
	}
	return out
}

// literalKey is a value's JSON text, a number's by value (1 and 1.0 are
// the same value to a validator).
func literalKey(x *jv) string {
	if x.kind == jvNumber {
		if f, err := strconv.ParseFloat(x.str, 64); err == nil {
			return strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	return string(x.appendJSON(nil))
}

// excludes reports whether no value matches both a and o.
func (a *branchInfo) excludes(o *branchInfo) bool {
	if a.types != nil && o.types != nil {
		overlap := false
		for _, t := range a.types {
			for _, u := range o.types {
				overlap = overlap || typeAllows([]string{t}, u) || typeAllows([]string{u}, t)
			}
		}
		if !overlap {
			return true
		}
	}
	if a.lits != nil && o.lits != nil && !intersects(a.lits, o.lits) {
		return true
	}
	for k, l := range a.disc {
		if m, ok := o.disc[k]; ok && !intersects(l, m) {
			return true
		}
	}
	return false
}

func intersects(a, b map[string]bool) bool {
	for k := range a {
		if b[k] {
			return true
		}
	}
	return false
}
