package nextaction

// Free text inside JSON strings, byte by byte. A free node's text is in
// one of two modes:
//
//   - modePlain: printable ASCII but '"' and '\' (isTextByte), one byte a
//     character. The next-action grammars use it: names are matched
//     verbatim and typed text stays ASCII.
//   - modeJSON: the content of any JSON string (RFC 8259): printable ASCII
//     and DEL but '"' and '\', the escapes \" \\ \/ \b \f \n \r \t and
//     \uXXXX (surrogates D800-DFFF excluded, so every escape decodes to one
//     character), and well-formed UTF-8 (no overlong forms, no surrogates,
//     nothing above U+10FFFF). Control bytes only appear escaped.
//
// A small automaton (strNext) reads the bytes of one character: its states
// are where a character is under way, strInit between characters. A free
// node counts characters, as JSON Schema's minLength and maxLength do,
// except that a character above U+FFFF counts 2 (as JavaScript's length
// does) and comes only once the minimum is met, so that both counts keep
// both bounds; a thread inside a character (s != strInit) may not leave
// the node.

// textMode is what a free node's text may hold.
type textMode uint8

const (
	modePlain textMode = iota
	modeJSON
)

// States of the JSON string automaton. strInit is a character boundary;
// the others wait for the rest of a character.
const (
	strInit  uint8 = iota
	strCont1       // one UTF-8 continuation byte (80-BF) to go
	strCont2       // two continuation bytes
	strE0          // after E0: A0-BF, then one more
	strED          // after ED: 80-9F (no surrogates), then one more
	strCont3       // three continuation bytes
	strF0          // after F0: 90-BF, then two more
	strF4          // after F4: 80-8F (at most U+10FFFF), then two more
	strEsc         // after a backslash
	strU4          // after \u: four hex digits to go
	strU3D         // after \uD: 0-7 (no surrogates), then two more
	strU3          // three hex digits to go
	strU2          // two hex digits to go
	strU1          // one hex digit to go
	strStates
)

// strFail marks a byte the state does not take.
const strFail = 0xFF

// strNeed is the fewest bytes that finish the character under way.
var strNeed = [strStates]uint8{
	strInit: 0, strCont1: 1, strCont2: 2, strE0: 2, strED: 2, strCont3: 3, strF0: 3, strF4: 3,
	strEsc: 1, strU4: 4, strU3D: 3, strU3: 3, strU2: 2, strU1: 1,
}

// strNext[s][c] is the state after byte c in state s, or strFail.
var strNext = func() (t [strStates][256]uint8) {
	for s := range t {
		for c := range t[s] {
			t[s][c] = strFail
		}
	}
	set := func(s uint8, lo, hi byte, to uint8) {
		for c := int(lo); c <= int(hi); c++ {
			t[s][c] = to
		}
	}
	set(strInit, 0x20, 0x7f, strInit)
	t[strInit]['"'] = strFail
	t[strInit]['\\'] = strEsc
	set(strInit, 0xc2, 0xdf, strCont1)
	t[strInit][0xe0] = strE0
	set(strInit, 0xe1, 0xec, strCont2)
	t[strInit][0xed] = strED
	set(strInit, 0xee, 0xef, strCont2)
	t[strInit][0xf0] = strF0
	set(strInit, 0xf1, 0xf3, strCont3)
	t[strInit][0xf4] = strF4
	set(strCont1, 0x80, 0xbf, strInit)
	set(strCont2, 0x80, 0xbf, strCont1)
	set(strE0, 0xa0, 0xbf, strCont1)
	set(strED, 0x80, 0x9f, strCont1)
	set(strCont3, 0x80, 0xbf, strCont2)
	set(strF0, 0x90, 0xbf, strCont2)
	set(strF4, 0x80, 0x8f, strCont2)
	for _, c := range []byte(`"\/bfnrt`) {
		t[strEsc][c] = strInit
	}
	t[strEsc]['u'] = strU4
	hex := func(s, to uint8) {
		set(s, '0', '9', to)
		set(s, 'a', 'f', to)
		set(s, 'A', 'F', to)
	}
	hex(strU4, strU3)
	t[strU4]['d'], t[strU4]['D'] = strU3D, strU3D
	set(strU3D, '0', '7', strU2)
	hex(strU3, strU2)
	hex(strU2, strU1)
	hex(strU1, strInit)
	return t
}()

// freeStep advances a thread of free node n by byte c.
func freeStep(n *node, t thread, c byte) (thread, bool) {
	if n.mode == modePlain {
		if t.n < n.max && isTextByte(c) {
			return thread{node: t.node, n: t.n + 1}, true
		}
		return thread{}, false
	}
	s := strNext[t.s][c]
	if s == strFail {
		return thread{}, false
	}
	if t.s == strInit { // c starts a character
		if isAstralLead(c) {
			// Above U+FFFF: two UTF-16 code units, so it counts 2 toward
			// the maximum (JavaScript's length, Zod's max) and is written
			// only once the minimum is met (every earlier character counted
			// 1, so the code points meet it too).
			if t.n < n.min || t.n+2 > n.max {
				return thread{}, false
			}
			return thread{node: t.node, n: t.n + 2, s: s}, true
		}
		if t.n >= n.max {
			return thread{}, false
		}
		return thread{node: t.node, n: t.n + 1, s: s}, true
	}
	return thread{node: t.node, n: t.n, s: s}, true
}

// isAstralLead reports whether c starts a 4-byte UTF-8 sequence (a
// character above U+FFFF).
func isAstralLead(c byte) bool { return c >= 0xf0 && c <= 0xf4 }

// startsText reports whether byte c can start a character of free text in
// mode m.
func startsText(m textMode, c byte) bool {
	if m == modePlain {
		return isTextByte(c)
	}
	return strNext[strInit][c] != strFail
}

// textRun is what a byte string does to free text of mode m entered at a
// character boundary: it reads n bytes as chars characters and ends in
// state s (strInit: at a boundary). When n < len(p), byte p[n] cannot come
// next; at is the state there.
type textRun struct {
	n, chars int32
	s        uint8
}

func runText(m textMode, p string) textRun {
	var r textRun
	for i := 0; i < len(p); i++ {
		c := p[i]
		if m == modePlain {
			if !isTextByte(c) {
				return r
			}
			r.n, r.chars = r.n+1, r.chars+1
			continue
		}
		next := strNext[r.s][c]
		if next == strFail || r.s == strInit && isAstralLead(c) {
			// A character above U+FFFF is allowed or not by the count
			// so far (freeStep): the index leaves it to simulation.
			return r
		}
		if r.s == strInit {
			r.chars++
		}
		r.n, r.s = r.n+1, next
	}
	return r
}
