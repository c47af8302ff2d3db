package eval

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nextact/nextact/nextaction"
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

// Pages under mayNotParse's threshold parse, however they nest: tables
// without rows and misnested formatting elements, the constructs that push
// the most elements per tag.
func TestMayNotParseBound(t *testing.T) {
	t.Parallel()
	for _, unit := range []string{"<table><td>", "<div>", "<b><p>", "<a><i><u><s>", "<table><col><td><b>"} {
		doc := strings.Repeat(unit, 120/strings.Count(unit, "<"))
		if mayNotParse(doc) {
			t.Fatalf("%q: %d '<' counted as too many", unit, strings.Count(doc, "<"))
		}
		if _, err := nextaction.ParsePage(doc); err != nil {
			t.Errorf("%q x %d does not parse: %v", unit, 120/strings.Count(unit, "<"), err)
		}
	}
	if !mayNotParse(strings.Repeat("<div>", 121)) {
		t.Error("121 tags not checked")
	}
}

// Random sequences of 120 of the tags that make the parser push the most
// all parse.
func TestMayNotParseRandom(t *testing.T) {
	t.Parallel()
	tags := []string{"<table>", "<td>", "<tr>", "<th>", "<col>", "<caption>", "<b>", "<i>", "<a>", "<nobr>", "<font>", "<p>", "<div>",
		"<select>", "<option>", "<svg>", "<math>", "<template>", "<li>", "<ul>", "<form>", "<button>", "<dd>", "<h1>", "<b id=x>", "</p>", "</b>", "</td>"}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 3000 {
		var b strings.Builder
		for range 120 {
			b.WriteString(tags[rng.IntN(len(tags))])
		}
		if _, err := nextaction.ParsePage(b.String()); err != nil {
			t.Fatalf("%q: %v", b.String(), err)
		}
	}
}
