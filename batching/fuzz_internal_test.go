package batching

import (
	"strings"
	"testing"
)

// FuzzStopStrings: whatever the pieces and stop strings, the text emitted
// (and flushed at the end) is the generated text cut before the first stop
// string to appear (the earliest one present after that piece), and what is held back is never more than a stop string's
// length plus an incomplete UTF-8 character. Seed corpus:
// testdata/fuzz/FuzzStopStrings.
func FuzzStopStrings(f *testing.F) {
	f.Add("ab|cd|ENDxx", "END", "")
	f.Add("a\xc3|\xa9 b|zz", "b", "zz")
	f.Add("aaaa|aaab", "aaab", "aab")
	f.Fuzz(func(t *testing.T, pieces, stop1, stop2 string) {
		var stops []string
		for _, s := range []string{stop1, stop2} {
			if s != "" && len(s) <= 64 {
				stops = append(stops, s)
			}
		}
		ts := textState{stops: stops}
		var got strings.Builder
		stopped := false
		for _, p := range strings.Split(pieces, "|") {
			out, st := ts.push(p)
			got.WriteString(out)
			if len(ts.buf) > 64+4+len(p) {
				t.Fatalf("holding %d bytes", len(ts.buf))
			}
			if st {
				stopped = true
				break
			}
		}
		if !stopped {
			got.WriteString(ts.flush())
		}
		// The reference, from the whole text: at the first piece after
		// which some stop string has appeared, the text is cut before the
		// earliest one present then.
		text := strings.ReplaceAll(pieces, "|", "")
		want, wantStop := text, false
		end := 0
		for _, p := range strings.Split(pieces, "|") {
			end += len(p)
			for _, s := range stops {
				if i := strings.Index(text[:end], s); i >= 0 && (!wantStop || i < len(want)) {
					want, wantStop = text[:i], true
				}
			}
			if wantStop {
				break
			}
		}
		if got.String() != want || stopped != wantStop {
			t.Fatalf("pieces %q stops %q: got %q (stop %v), want %q (stop %v)", pieces, stops, got.String(), stopped, want, wantStop)
		}
	})
}
