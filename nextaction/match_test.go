package nextaction

// Test-only additions to the package (visible to its internal and
// external tests alike).

// Match reports whether the grammar accepts out exactly (a test oracle; the
// decoder itself never needs it).
func (g *Grammar) Match(out []byte) bool {
	var ts tset
	s := g.initial(&ts)
	var tmp []thread
	for _, c := range out {
		tmp = g.step(&ts, tmp, s, c)
		if len(tmp) == 0 {
			return false
		}
		s, tmp = tmp, s
	}
	ok, _ := g.accepting(s)
	return ok
}
