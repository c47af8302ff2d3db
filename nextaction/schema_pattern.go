package nextaction

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// JSON Schema's pattern, for the regular expressions that compile to a
// bounded automaton: literals (any UTF-8), escapes (\d \w \s \D \W \S,
// \. and other punctuation, \n \t \r \f \v, \uXXXX, \xHH), classes
// ([a-z0-9_], [^...]) over ASCII, ., groups ((...), (?:...), named),
// alternation, and the quantifiers ? * + {n} {n,} {n,m} (lazy forms too).
// The decoder writes a string the whole expression matches, which also
// satisfies JSON Schema's unanchored search; ^ and $ are allowed at the
// ends. Unbounded quantifiers are capped only by the token budget (the
// decoder closes the string in time). Anything else (lookaround,
// backreferences, \b, \p{...}, possessive quantifiers) is an
// *UnsupportedError naming it. Non-ASCII members of a class are left
// out (the decoder never writes them); a class left empty is refused.

// maxRepeat bounds the counts of {n,m}.
const maxRepeat = 1000

// re is a parsed regular expression.
type re struct {
	op   reOp
	set  *[128]bool // reSet: the ASCII characters
	lit  string     // reLit: one character's UTF-8
	subs []*re
	min  int
	max  int // -1: unbounded
}

type reOp uint8

const (
	reLit reOp = iota
	reSet
	reCat
	reAlt
	reRep
)

// lengths is the fewest and most characters r matches (max -1: any).
func (r *re) lengths() (lo, hi int) {
	switch r.op {
	case reLit:
		if len(r.lit) == 4 {
			return 1, 2 // above U+FFFF: 2 in UTF-16, as JavaScript counts
		}
		return 1, 1
	case reSet:
		return 1, 1
	case reCat:
		for _, s := range r.subs {
			l, h := s.lengths()
			lo += l
			if hi >= 0 {
				hi = addLen(hi, h)
			}
		}
		return lo, hi
	case reAlt:
		lo, hi = -1, 0
		for _, s := range r.subs {
			l, h := s.lengths()
			if lo < 0 || l < lo {
				lo = l
			}
			if hi >= 0 && (h < 0 || h > hi) {
				hi = h
			}
		}
		return max(lo, 0), hi
	}
	l, h := r.subs[0].lengths()
	lo = min(l*r.min, 1<<30)
	switch {
	case r.max < 0 && h != 0:
		hi = -1
	case h < 0:
		hi = -1
	default:
		hi = min(h*max(r.max, 0), 1<<30)
	}
	return lo, hi
}

func addLen(a, b int) int {
	if b < 0 {
		return -1
	}
	return min(a+b, 1<<30)
}

// pattern compiles a pattern into the content of a JSON string of at
// least lo characters and, with hi >= 0, at most hi: the pattern's own
// lengths must lie within them.
func (b *builder) pattern(src string, lo, hi int, path string) (part, error) {
	p := &reParser{src: src, path: path}
	r, err := p.parse()
	if err != nil {
		return part{}, err
	}
	if rl, rh := r.lengths(); rl < lo || hi >= 0 && (rh < 0 || rh > hi) {
		return part{}, &UnsupportedError{Feature: fmt.Sprintf("minLength/maxLength beside a pattern whose matches may be shorter or longer (%d to %s characters)", rl, lenText(rh)), Path: path}
	}
	return b.regex(r, path)
}

func lenText(n int) string {
	if n < 0 {
		return "any number of"
	}
	return strconv.Itoa(n)
}

// regex builds r.
func (b *builder) regex(r *re, path string) (part, error) {
	if b.over {
		return part{}, errOverNodes
	}
	switch r.op {
	case reLit:
		return b.lit(jsonChar(r.lit)), nil
	case reSet:
		return b.charSet(r.set), nil
	case reCat, reAlt:
		ps := make([]part, 0, len(r.subs))
		for _, s := range r.subs {
			p, err := b.regex(s, path)
			if err != nil {
				return part{}, err
			}
			ps = append(ps, p)
		}
		if r.op == reCat {
			return b.seq(ps...), nil
		}
		return b.alt(ps...), nil
	}
	sub := r.subs[0]
	if l, h := sub.lengths(); h == 0 {
		return b.empty(), nil // (){n,m}: nothing
	} else if l == 0 && r.max < 0 {
		return part{}, &UnsupportedError{Feature: "unbounded quantifier over an expression that can match the empty string", Path: path}
	}
	var ps []part
	for i := 0; i < r.min; i++ {
		p, err := b.regex(sub, path)
		if err != nil {
			return part{}, err
		}
		ps = append(ps, p)
	}
	if r.max < 0 {
		p, err := b.regex(sub, path)
		if err != nil {
			return part{}, err
		}
		ps = append(ps, b.star(p))
	} else {
		// Optional copies, nested: (x(x(x)?)?)? keeps the state small.
		var tail part
		for i := r.max - r.min; i > 0; i-- {
			p, err := b.regex(sub, path)
			if err != nil {
				return part{}, err
			}
			if i < r.max-r.min {
				p = b.seq(p, tail)
			}
			tail = b.opt(p)
		}
		if r.max > r.min {
			ps = append(ps, tail)
		}
	}
	return b.seq(ps...), nil
}

// jsonChar is one character as it is written inside a JSON string.
func jsonChar(ch string) string {
	switch ch {
	case `"`:
		return `\"`
	case `\`:
		return `\\`
	case "\n":
		return `\n`
	case "\t":
		return `\t`
	case "\r":
		return `\r`
	case "\f":
		return `\f`
	case "\b":
		return `\b`
	}
	if len(ch) == 1 && ch[0] < 0x20 {
		return fmt.Sprintf(`\u%04x`, ch[0])
	}
	return ch
}

// charSet is one character of an ASCII set: a class node for those
// written as themselves, and the escaped ones as literals.
func (b *builder) charSet(set *[128]bool) part {
	var plain strings.Builder
	var alts []part
	for c := range 128 {
		if !set[c] {
			continue
		}
		if w := jsonChar(string(rune(c))); len(w) == 1 {
			plain.WriteByte(byte(c))
		} else {
			alts = append(alts, b.lit(w))
		}
	}
	if plain.Len() > 0 {
		alts = append([]part{b.class(plain.String())}, alts...)
	}
	return b.alt(alts...)
}

// reParser is a recursive-descent parser of the supported regex syntax.
type reParser struct {
	src  string
	pos  int
	path string
	// depth is the group nesting, bounded like schema nesting.
	depth int
}

func (p *reParser) unsupported(what string) error {
	return &UnsupportedError{Feature: fmt.Sprintf("pattern %q: %s", p.src, what), Path: p.path}
}

func (p *reParser) parse() (*re, error) {
	r, err := p.alt(true)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.src) {
		return nil, p.unsupported("unbalanced )")
	}
	return r, nil
}

// alt parses alternatives; top says it is the whole pattern (where ^ and $
// may open and close each alternative).
func (p *reParser) alt(top bool) (*re, error) {
	var subs []*re
	for {
		r, err := p.cat(top)
		if err != nil {
			return nil, err
		}
		subs = append(subs, r)
		if p.pos < len(p.src) && p.src[p.pos] == '|' {
			p.pos++
			continue
		}
		break
	}
	if len(subs) == 1 {
		return subs[0], nil
	}
	return &re{op: reAlt, subs: subs}, nil
}

func (p *reParser) cat(top bool) (*re, error) {
	var subs []*re
	if top && p.pos < len(p.src) && p.src[p.pos] == '^' {
		p.pos++
	}
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if c == '|' || c == ')' {
			break
		}
		if c == '$' {
			p.pos++
			if !top || p.pos < len(p.src) && p.src[p.pos] != '|' {
				return nil, p.unsupported("$ other than at the end")
			}
			break
		}
		if c == '^' {
			return nil, p.unsupported("^ other than at the start")
		}
		atom, err := p.atom()
		if err != nil {
			return nil, err
		}
		atom, err = p.quantifier(atom)
		if err != nil {
			return nil, err
		}
		subs = append(subs, atom)
	}
	return &re{op: reCat, subs: subs}, nil
}

func (p *reParser) quantifier(atom *re) (*re, error) {
	if p.pos >= len(p.src) {
		return atom, nil
	}
	lo, hi := 0, 0
	switch p.src[p.pos] {
	case '?':
		lo, hi = 0, 1
	case '*':
		lo, hi = 0, -1
	case '+':
		lo, hi = 1, -1
	case '{':
		end := strings.IndexByte(p.src[p.pos:], '}')
		if end < 0 {
			return nil, p.unsupported("{ without }")
		}
		body := p.src[p.pos+1 : p.pos+end]
		var err error
		if lo, hi, err = repeatBounds(body); err != nil {
			return nil, p.unsupported(err.Error())
		}
		p.pos += end
	default:
		return atom, nil
	}
	p.pos++
	if p.pos < len(p.src) {
		switch p.src[p.pos] {
		case '?':
			p.pos++ // lazy: the same strings
		case '+':
			return nil, p.unsupported("possessive quantifier")
		}
	}
	if p.pos < len(p.src) && strings.IndexByte("*+?{", p.src[p.pos]) >= 0 {
		return nil, p.unsupported("quantifier after a quantifier")
	}
	return &re{op: reRep, subs: []*re{atom}, min: lo, max: hi}, nil
}

// repeatBounds reads "n", "n," or "n,m".
func repeatBounds(body string) (lo, hi int, err error) {
	a, b, comma := strings.Cut(body, ",")
	lo, err = strconv.Atoi(a)
	if err != nil || lo < 0 || lo > maxRepeat {
		return 0, 0, fmt.Errorf("repetition {%s} (counts 0..%d)", body, maxRepeat)
	}
	switch {
	case !comma:
		return lo, lo, nil
	case b == "":
		return lo, -1, nil
	}
	hi, err = strconv.Atoi(b)
	if err != nil || hi < lo || hi > maxRepeat {
		return 0, 0, fmt.Errorf("repetition {%s} (counts 0..%d)", body, maxRepeat)
	}
	return lo, hi, nil
}

func (p *reParser) atom() (*re, error) {
	c := p.src[p.pos]
	switch c {
	case '(':
		return p.group()
	case '[':
		return p.class()
	case '.':
		p.pos++
		return &re{op: reSet, set: printableSet(nil)}, nil
	case '\\':
		return p.escape(false)
	case '*', '+', '?', '{':
		return nil, p.unsupported(fmt.Sprintf("quantifier %c with nothing before it", c))
	}
	r, size := utf8.DecodeRuneInString(p.src[p.pos:])
	if r == utf8.RuneError && size <= 1 {
		return nil, p.unsupported("invalid UTF-8")
	}
	p.pos += size
	return &re{op: reLit, lit: string(r)}, nil
}

func (p *reParser) group() (*re, error) {
	p.pos++ // (
	rest := p.src[p.pos:]
	switch {
	case strings.HasPrefix(rest, "?:"):
		p.pos += 2
	case strings.HasPrefix(rest, "?P<"), strings.HasPrefix(rest, "?<") && !strings.HasPrefix(rest, "?<=") && !strings.HasPrefix(rest, "?<!"):
		end := strings.IndexByte(rest, '>')
		if end < 0 {
			return nil, p.unsupported("unterminated group name")
		}
		p.pos += end + 1
	case strings.HasPrefix(rest, "?"):
		return nil, p.unsupported("lookaround or inline flags (?" + firstRune(rest[1:]) + "...)")
	}
	if p.depth++; p.depth > 64 {
		return nil, p.unsupported("groups nested deeper than 64")
	}
	r, err := p.alt(false)
	p.depth--
	if err != nil {
		return nil, err
	}
	if p.pos >= len(p.src) || p.src[p.pos] != ')' {
		return nil, p.unsupported("unbalanced (")
	}
	p.pos++
	return r, nil
}

func firstRune(s string) string {
	r, _ := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError {
		return ""
	}
	return string(r)
}

// class parses [...] into an ASCII set.
func (p *reParser) class() (*re, error) {
	p.pos++ // [
	neg := false
	if p.pos < len(p.src) && p.src[p.pos] == '^' {
		neg, p.pos = true, p.pos+1
	}
	var set [128]bool
	first := true
	for {
		if p.pos >= len(p.src) {
			return nil, p.unsupported("unterminated [")
		}
		if p.src[p.pos] == ']' && !first {
			p.pos++
			break
		}
		first = false
		lo, loSet, err := p.classAtom()
		if err != nil {
			return nil, err
		}
		if loSet != nil {
			for c, ok := range loSet {
				set[c] = set[c] || ok
			}
			continue
		}
		hi := lo
		if p.pos+1 < len(p.src) && p.src[p.pos] == '-' && p.src[p.pos+1] != ']' {
			p.pos++
			var hiSet *[128]bool
			if hi, hiSet, err = p.classAtom(); err != nil {
				return nil, err
			}
			if hiSet != nil || hi < lo {
				return nil, p.unsupported("bad range in a class")
			}
		}
		for r := lo; r <= hi && r < 128; r++ {
			set[r] = true
		}
	}
	if neg {
		set = *printableSet(&set)
	}
	empty := true
	for _, ok := range set {
		empty = empty && !ok
	}
	if empty {
		return nil, p.unsupported("class with no ASCII character")
	}
	return &re{op: reSet, set: &set}, nil
}

// classAtom reads one member of a class: a character, or a shorthand set.
func (p *reParser) classAtom() (rune, *[128]bool, error) {
	if p.src[p.pos] == '\\' {
		r, err := p.escape(true)
		if err != nil {
			return 0, nil, err
		}
		if r.op == reSet {
			return 0, r.set, nil
		}
		ch, _ := utf8.DecodeRuneInString(r.lit)
		return ch, nil, nil
	}
	if p.src[p.pos] == '[' && strings.HasPrefix(p.src[p.pos:], "[:") {
		return 0, nil, p.unsupported("POSIX class [:...:]")
	}
	r, size := utf8.DecodeRuneInString(p.src[p.pos:])
	if r == utf8.RuneError && size <= 1 {
		return 0, nil, p.unsupported("invalid UTF-8")
	}
	p.pos += size
	return r, nil, nil
}

// printableSet is printable ASCII (space to '~') without the members of
// except (nil: none).
func printableSet(except *[128]bool) *[128]bool {
	var s [128]bool
	for c := 0x20; c < 0x7f; c++ {
		s[c] = except == nil || !except[c]
	}
	return &s
}

func rangeSet(spans ...string) *[128]bool {
	var s [128]bool
	for _, sp := range spans {
		for c := sp[0]; c <= sp[len(sp)-1]; c++ {
			s[c] = true
		}
	}
	return &s
}

var (
	digitSet = rangeSet("09")
	wordSet  = rangeSet("az", "AZ", "09", "_")
	spaceSet = rangeSet(" ", "\t", "\n", "\r", "\f") // RE2's \s: no \v
)

// escape reads a backslash escape: a literal character or a shorthand
// set. inClass allows \b as backspace.
func (p *reParser) escape(inClass bool) (*re, error) {
	p.pos++ // backslash
	if p.pos >= len(p.src) {
		return nil, p.unsupported("trailing backslash")
	}
	c := p.src[p.pos]
	p.pos++
	lit := func(s string) (*re, error) { return &re{op: reLit, lit: s}, nil }
	switch c {
	case 'd':
		return &re{op: reSet, set: digitSet}, nil
	case 'w':
		return &re{op: reSet, set: wordSet}, nil
	case 's':
		return &re{op: reSet, set: spaceSet}, nil
	case 'D':
		return &re{op: reSet, set: printableSet(digitSet)}, nil
	case 'W':
		return &re{op: reSet, set: printableSet(wordSet)}, nil
	case 'S':
		return &re{op: reSet, set: printableSet(spaceSet)}, nil
	case 'n':
		return lit("\n")
	case 't':
		return lit("\t")
	case 'r':
		return lit("\r")
	case 'f':
		return lit("\f")
	case 'v':
		return lit("\v")
	case 'b':
		if inClass {
			return lit("\b")
		}
		return nil, p.unsupported(`word boundary \b`)
	case 'u', 'x':
		n := 4
		if c == 'x' {
			n = 2
		}
		if p.pos+n > len(p.src) {
			return nil, p.unsupported(`short \` + string(c) + " escape")
		}
		v, err := strconv.ParseUint(p.src[p.pos:p.pos+n], 16, 32)
		if err != nil || v >= 0xd800 && v <= 0xdfff {
			return nil, p.unsupported(`bad \` + string(c) + " escape")
		}
		p.pos += n
		return lit(string(rune(v)))
	}
	if c < 0x80 && !isWordByte(c) {
		return lit(string(c)) // \. \- \/ \\ \( ... : the character itself
	}
	if c >= '1' && c <= '9' {
		return nil, p.unsupported("backreference")
	}
	return nil, p.unsupported(`escape \` + string(c))
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// formatPatterns are the formats the decoder writes, as patterns whose
// every match is valid for the format (dates up to the 28th of a month,
// so every month has them).
var formatPatterns = map[string]string{
	"date":      `\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])`,
	"time":      `([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)`,
	"date-time": `\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)`,
	"uuid":      `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`,
	"email":     `[a-z0-9_]{1,32}(\.[a-z0-9_]{1,16})?@[a-z0-9]{1,32}(\.[a-z0-9]{1,32})?\.[a-z]{2,6}`,
	"ipv4":      `(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}`,
}

// supportedFormats lists formatPatterns' names for error messages.
const supportedFormats = "date, time, date-time, uuid, email, ipv4"
