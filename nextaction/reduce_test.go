package nextaction_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

// checkReduced asserts the contract of ReducePage on doc at budget max:
// within budget, and parsing to exactly the original's first elements
// (names, kinds, labels; tags unless flat).
func checkReduced(t *testing.T, doc string, max int) (string, nextaction.Reduction) {
	t.Helper()
	want, err := nextaction.ParsePage(doc)
	if err != nil {
		t.Fatal(err)
	}
	out, r, err := nextaction.ReducePage(doc, max)
	if err != nil {
		t.Fatalf("ReducePage(max %d): %v", max, err)
	}
	if len(out) > max && r.Stage != nextaction.ReduceNone {
		t.Fatalf("reduced to %d bytes, over %d", len(out), max)
	}
	if r.Stage == nextaction.ReduceNone {
		if out != doc || r.BytesAfter != len(doc) || len(doc) > max {
			t.Fatalf("unchanged page: %+v", r)
		}
		return out, r
	}
	if r.BytesBefore != len(doc) || r.BytesAfter != len(out) || r.Elements != len(want.Elements) {
		t.Fatalf("reduction %+v for %d -> %d bytes, %d elements", r, len(doc), len(out), len(want.Elements))
	}
	got, err := nextaction.ParsePage(out)
	if err != nil {
		t.Fatal(err)
	}
	kept := len(want.Elements) - r.ElementsDropped
	if len(got.Elements) != kept {
		t.Fatalf("reduced page has %d elements, want the first %d of %d (%+v)", len(got.Elements), kept, len(want.Elements), r)
	}
	for i, e := range got.Elements {
		w := want.Elements[i]
		if r.Flat {
			e.Tag, w.Tag = "", ""
		}
		if e != w {
			t.Fatalf("element %d: got %+v, want %+v", i, e, w)
		}
	}
	if (r.ElementsDropped > 0) != (r.Stage == nextaction.ReduceCap) {
		t.Fatalf("stage %s with %d elements dropped", r.Stage, r.ElementsDropped)
	}
	return out, r
}

// Generated pages keep every element, kind, tag and label at every budget
// down to the cap, which keeps a prefix; none needs the flat fallback.
func TestReducePageKeepsElements(t *testing.T) {
	t.Parallel()
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 77))
		doc, _, _, _ := nextactiontest.RandomPage(rng, nextactiontest.PageOptions{ApproxBytes: 4096 + int(seed)*300})
		for _, frac := range []float64{1, 0.8, 0.5, 0.3, 0.15, 0.05} {
			max := int(float64(len(doc)) * frac)
			_, r := checkReduced(t, doc, max)
			if r.Flat {
				t.Errorf("seed %d, budget %d: flat fallback on a generated page", seed, max)
			}
			if frac == 1 && (r.Stage != nextaction.ReduceNone) {
				t.Errorf("seed %d: a page within budget was changed (%s)", seed, r.Stage)
			}
		}
	}
}

func TestReducePageStages(t *testing.T) {
	t.Parallel()
	doc := `<html><head><title>Store</title><script>var x = "<a name='fake'>";</script></head><body>
<p class="intro">First paragraph of text.</p>
<div name="item" class="card" data-x="1">
  <a name="item.view_product" href="/very/long/url/that/goes/on" onclick="track(12345)">Columbia   Shirt</a>
  <span>$29.99</span>
  <input type="checkbox" name="item.compare" checked aria-label="Compare">
</div>
<p>Second paragraph, much longer, with reviews and other text nobody needs.</p>
<button name="buy_now">Buy <b>now</b></button>
</body></html>`
	// Stage 2 with room for all text: only markup and scripts go.
	out, r := checkReduced(t, doc, len(doc)-1)
	if r.Stage != nextaction.ReduceText {
		t.Fatalf("stage %s", r.Stage)
	}
	for _, s := range []string{"First paragraph", "$29.99", "Second paragraph", "Columbia Shirt", "Buy now", "Store", `checked=""`, `onclick=""`} {
		if !strings.Contains(out, s) {
			t.Errorf("missing %q in %s", s, out)
		}
	}
	for _, s := range []string{"script", "fake", "href", "class", "track", "data-x"} {
		if strings.Contains(out, s) {
			t.Errorf("kept %q in %s", s, out)
		}
	}
	// The skeleton, at the least budget that keeps every element: no
	// unnamed text at all.
	var skel string
	for max := 0; max < len(doc); max++ {
		if out, r, _ := nextaction.ReducePage(doc, max); r.ElementsDropped == 0 {
			skel = out
			break
		}
	}
	checkReduced(t, doc, len(skel))
	for _, s := range []string{"Store", "paragraph", "$29.99"} {
		if strings.Contains(skel, s) {
			t.Errorf("skeleton kept %q: %s", s, skel)
		}
	}
	if !strings.Contains(skel, `name="buy_now">Buy now</button>`) || !strings.Contains(skel, `aria-label="Compare"`) {
		t.Errorf("skeleton lost a label: %s", skel)
	}
	// Text comes back from the top down: a little more room brings the
	// title and the first paragraph, cut where the budget ends, and nothing
	// after it.
	part, r := checkReduced(t, doc, len(skel)+len("<title>Store</title>")+len("<p>First paragraph of</p>"))
	if r.Stage != nextaction.ReduceText || !strings.Contains(part, "First paragraph") || strings.Contains(part, "$29.99") || strings.Contains(part, "Second") {
		t.Errorf("partial text: %s", part)
	}
	// Below the skeleton: the cap keeps the first elements.
	capped, r := checkReduced(t, doc, 90)
	if r.Stage != nextaction.ReduceCap || r.ElementsDropped == 0 || !strings.Contains(capped, `name="item"`) {
		t.Errorf("cap: %+v %s", r, capped)
	}
	empty, r := checkReduced(t, doc, 0)
	if empty != "" || r.ElementsDropped != r.Elements {
		t.Errorf("budget 0: %q %+v", empty, r)
	}
}

// Pages that HTML parsing would rearrange, duplicates and unsafe names.
func TestReducePageHostile(t *testing.T) {
	t.Parallel()
	pad := "<p>" + strings.Repeat("filler text ", 400) + "</p>"
	tests := map[string]string{
		"duplicates":        `<div name="x"><a name="x.a">A</a></div><a name="x">X</a><a name="x.a">again</a><span name="x">c</span>`,
		"unsafe names":      `<a name="a&quot;b">q</a><a name="ok">ok</a><div name="">e</div>`,
		"nested targets":    `<div role="button" name="card"><a name="card.view">View</a> long text here <button name="card.buy">Buy</button></div>`,
		"table roles":       `<table role="button" name="t"><tr onclick="x()" name="t.r"><td name="t.r.c">cell text</td></tr></table>`,
		"select":            `<select name="size"><option name="size.s">Small</option><option name="size.m">Medium</option>loose</select>`,
		"named body":        `<body name="page"><a name="go">Go</a></body>`,
		"template noscript": `<template><a name="tpl">T</a></template><noscript><a name="ns">N</a></noscript><a name="real">R</a>`,
		"svg":               `<svg><a name="svg.link"><text>Chart</text></a></svg><a name="html.link">L</a>`,
		"labels from attrs": `<a name="icon" title="Close"><img alt="x"></a><input name="q" placeholder="Search" value="v"><textarea name="msg">Hello &amp; bye</textarea>`,
		"entities":          `<a name="n&amp;m">Tom &lt;&amp;&gt; Jerry &quot;quoted&quot;</a><p>5 &lt; 6 &amp; 'single'</p>`,
		"formatting":        `<b><a name="a1">one<i>two</b>three</i></a><p><a name="a2">x</a>`,
		"invalid utf8":      "<a name=\"u\">caf\xe9</a><p>bad \xff\xfe text</p>",
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			doc := body + pad
			for _, max := range []int{len(doc) - 1, len(body) + 200, len(body) / 2, 40} {
				checkReduced(t, doc, max)
			}
		})
	}
}

// Deep nesting, many elements and a large page stay linear enough to run
// in a test (and within ParsePage's own depth limit).
func TestReducePageLarge(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 400 {
		b.WriteString("<div>")
		fmt.Fprintf(&b, `<a name="deep.%d">link %d</a>`, i, i)
	}
	for i := range 5000 {
		fmt.Fprintf(&b, `<li><button name="b%d">Button %d</button> review text %d with more words</li>`, i, i, i)
	}
	doc := b.String()
	for _, max := range []int{len(doc) / 2, len(doc) / 10, 4096} {
		checkReduced(t, doc, max)
	}
}

func TestReducePageBadBudget(t *testing.T) {
	t.Parallel()
	if _, _, err := nextaction.ReducePage("<a name=x>x</a>", -1); err == nil {
		t.Fatal("negative budget accepted")
	}
}
