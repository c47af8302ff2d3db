package eval

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// jsonLen is exactly the length json.Marshal gives a string.
func TestJSONLen(t *testing.T) {
	t.Parallel()
	alphabet := []string{"a", "<", ">", "&", `"`, `\`, "\n", "\r", "\t", "\x00", "\x1f", "é", "日", "\u2028", "\u2029", "\xff", "\xe2\x82", "😀", " "}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		s := b.String()
		want, _ := json.Marshal(s)
		if got := jsonLen(s); got != len(want) {
			t.Fatalf("jsonLen(%q) = %d, json.Marshal gives %d (%s)", s, got, len(want), want)
		}
	}
}
