package batching

import (
	"strings"
	"unicode/utf8"
)

// textState turns generated pieces into text that is safe to emit: it holds
// back an incomplete UTF-8 character and any tail that may still become a
// stop string, and cuts the text at the first stop string.
type textState struct {
	stops []string
	buf   []byte // generated, not yet emitted
	// fail holds each stop's KMP failure function, built on first use.
	fail [][]int
}

// push adds a piece and returns the text now safe to emit, and whether a
// stop string ended the text.
func (t *textState) push(piece string) (string, bool) {
	t.buf = append(t.buf, piece...)
	if i := t.firstStop(); i >= 0 {
		out := string(t.buf[:i])
		t.buf = t.buf[:0]
		return out, true
	}
	safe := len(t.buf) - t.stopPrefixHold()
	safe = utf8Safe(t.buf[:safe])
	out := string(t.buf[:safe])
	t.buf = append(t.buf[:0], t.buf[safe:]...)
	return out, false
}

// flush returns whatever is held back.
func (t *textState) flush() string {
	out := string(t.buf)
	t.buf = t.buf[:0]
	return out
}

// firstStop is the index in buf of the earliest stop string, or -1.
func (t *textState) firstStop() int {
	first := -1
	for _, s := range t.stops {
		if i := strings.Index(string(t.buf), s); i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

// stopPrefixHold is the length of the longest suffix of buf that is a proper
// prefix of a stop string: the state of a KMP automaton of each stop run
// over buf's last len(stop)-1 bytes (buf holds no whole stop), so O(stop
// length) per stop, where comparing every suffix with every prefix was
// quadratic in it.
func (t *textState) stopPrefixHold() int {
	if t.fail == nil && len(t.stops) > 0 {
		t.fail = make([][]int, len(t.stops))
		for i, s := range t.stops {
			t.fail[i] = kmpFailure(s)
		}
	}
	hold := 0
	for i, s := range t.stops {
		f, k := t.fail[i], 0
		for _, c := range t.buf[len(t.buf)-min(len(s)-1, len(t.buf)):] {
			for k > 0 && s[k] != c {
				k = f[k-1]
			}
			if s[k] == c {
				k++
			}
		}
		hold = max(hold, k)
	}
	return hold
}

// kmpFailure is s's prefix function: f[i] is the length of the longest
// proper prefix of s[:i+1] that is also its suffix.
func kmpFailure(s string) []int {
	f := make([]int, len(s))
	for i, k := 1, 0; i < len(s); i++ {
		for k > 0 && s[i] != s[k] {
			k = f[k-1]
		}
		if s[i] == s[k] {
			k++
		}
		f[i] = k
	}
	return f
}

// utf8Safe is the length of the longest prefix of b that does not end inside
// a UTF-8 character that may still be completed.
func utf8Safe(b []byte) int {
	for back := 1; back <= utf8.UTFMax && back <= len(b); back++ {
		c := b[len(b)-back]
		if c < utf8.RuneSelf { // ASCII: everything before it is settled
			return len(b)
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[len(b)-back:]) {
				return len(b)
			}
			return len(b) - back
		}
	}
	return len(b)
}
