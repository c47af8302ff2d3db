// Package nextactiontest generates next-action test data: seeded random
// simplified-HTML pages with hierarchical names, for tests and benchmarks
// of nextaction and of the server. Test-only: production code never
// imports it.
package nextactiontest

import (
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/nextact/nextact/nextaction"
)

// PageOptions shape the pages of RandomPage. A zero field takes its
// default; a negative count means none, a negative ApproxBytes no padding.
type PageOptions struct {
	// MaxClickables bounds the clickable elements (default 40); a page has
	// 0..MaxClickables of them, uniformly.
	MaxClickables int
	// MaxInputs bounds the input elements (default 4).
	MaxInputs int
	// ApproxBytes is the size the page is padded to with unnamed
	// decoration (default 8192). Pages with many elements may be larger.
	ApproxBytes int
}

// Defaults of PageOptions.
const (
	DefaultMaxClickables = 40
	DefaultMaxInputs     = 4
	DefaultApproxBytes   = 8192
)

const (
	maxTreeDepth   = 10
	maxSelectItems = 6
)

// RandomPage returns a random simplified-HTML page and the names of its
// clickable, input and container elements in document order: what
// ParsePage finds in it. Elements sit in a random tree of div, section,
// nav, ul/li ... with hierarchical names (segments of [a-z0-9_] joined by
// "."), sometimes deep, built as the paper's pages are: a named container
// (a div, span, li, img, a hidden input ...) gives its name to the
// elements inside it and is never a target; clickables are links,
// buttons, options, labels, button-like inputs and other elements made
// clickable by a control role or onclick. Labels, and unnamed decoration,
// including a script and a comment holding element-like text that a real
// parser ignores. The page depends only on opts and rng's state.
func RandomPage(rng *rand.Rand, opts PageOptions) (page string, clickables, inputs, containers []string) {
	maxC := orDefault(opts.MaxClickables, DefaultMaxClickables)
	maxI := orDefault(opts.MaxInputs, DefaultMaxInputs)
	size := orDefault(opts.ApproxBytes, DefaultApproxBytes)
	items := make([]nextaction.Kind, 0, maxC+maxI)
	for range rng.IntN(maxC + 1) {
		items = append(items, nextaction.Clickable)
	}
	for range rng.IntN(maxI + 1) {
		items = append(items, nextaction.Input)
	}
	rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })

	g := &pageGen{rng: rng, used: make(map[string]bool), slot: size / (len(items) + 4)}
	g.b.Grow(size + 1024)
	g.b.WriteString("<!DOCTYPE html>\n<html><head><title>")
	g.words(1, 4)
	g.b.WriteString("</title></head>\n<body>\n")
	g.block(items, nil, 0)
	for g.b.Len() < size {
		g.b.WriteString("<p>")
		g.words(8, 40)
		g.b.WriteString("</p>\n")
	}
	g.b.WriteString("</body></html>\n")
	return g.b.String(), g.clickables, g.inputs, g.containers
}

func orDefault(v, def int) int {
	switch {
	case v < 0:
		return 0
	case v == 0:
		return def
	}
	return v
}

type pageGen struct {
	rng        *rand.Rand
	b          strings.Builder
	used       map[string]bool
	clickables []string
	inputs     []string
	containers []string
	slot       int // decoration bytes between elements, on average
}

// block writes items (in order) into the current container.
func (g *pageGen) block(items []nextaction.Kind, scope []string, depth int) {
	for len(items) > 0 {
		g.decorate()
		r := g.rng.IntN(10)
		switch {
		case depth < maxTreeDepth && len(items) > 1 && r < 3:
			k := 1 + g.rng.IntN(len(items))
			g.container(items[:k], scope, depth+1)
			items = items[k:]
		case r == 3 && items[0] == nextaction.Clickable:
			m := 0
			for m < len(items) && m < maxSelectItems && items[m] == nextaction.Clickable {
				m++
			}
			k := 1 + g.rng.IntN(m)
			g.selectBox(k, scope)
			items = items[k:]
		case r == 4 && g.rng.IntN(3) == 0:
			g.namedDecoration(scope)
		default:
			g.leaf(items[0], scope)
			items = items[1:]
		}
	}
	g.decorate()
}

// namedDecoration writes a named element that is not a target: a badge,
// an image, a hidden or date input.
func (g *pageGen) namedDecoration(scope []string) {
	name := g.claim(scope, []string{g.segment()})
	switch g.rng.IntN(4) {
	case 0:
		g.b.WriteString(`<img src="/b.png"`)
		g.nameAttr(name, nextaction.Container)
		g.b.WriteString(` alt="`)
		g.words(1, 2)
		g.b.WriteString("\">\n")
	case 1:
		g.b.WriteString(`<input type="hidden"`)
		g.nameAttr(name, nextaction.Container)
		g.b.WriteString(">\n")
	case 2:
		g.b.WriteString(`<input type="date"`)
		g.nameAttr(name, nextaction.Container)
		g.b.WriteString(">\n")
	default:
		g.b.WriteString("<span")
		g.nameAttr(name, nextaction.Container)
		g.b.WriteString(">")
		g.words(1, 4)
		g.b.WriteString("</span>\n")
	}
}

var containerTags = []string{"div", "div", "section", "nav", "article", "aside", "header", "span", "ul"}

// container writes an element holding items, sometimes under a new name
// scope, then often itself named with that scope (a container, as in the
// paper's pages), and sometimes made a clickable by a control role or
// onclick (taking the first item, a clickable).
func (g *pageGen) container(items []nextaction.Kind, scope []string, depth int) {
	tag := pick(g.rng, containerTags)
	inner := scope
	switch r := g.rng.IntN(8); {
	case r == 0: // deep: several segments at once
		inner = g.extend(scope, 3+g.rng.IntN(4))
	case r < 5:
		inner = g.extend(scope, 1)
	}
	g.b.WriteString("<" + tag)
	g.class()
	if len(inner) > len(scope) {
		switch r := g.rng.IntN(8); {
		case r == 0 && items[0] == nextaction.Clickable:
			g.clickAttr()
			g.nameAttr(g.claim(inner, nil), nextaction.Clickable)
			items = items[1:]
		case r < 5:
			g.nameAttr(g.claim(inner, nil), nextaction.Container)
		}
	}
	g.b.WriteString(">\n")
	if tag != "ul" {
		g.block(items, inner, depth)
	}
	for tag == "ul" && len(items) > 0 {
		k := 1 + g.rng.IntN(min(len(items), 3))
		g.b.WriteString("<li>")
		g.block(items[:k], inner, depth+1)
		g.b.WriteString("</li>\n")
		items = items[k:]
	}
	g.b.WriteString("</" + tag + ">\n")
}

// selectBox writes a select whose options (and sometimes the select
// itself) are k named clickables.
func (g *pageGen) selectBox(k int, scope []string) {
	inner := g.extend(scope, 1)
	g.b.WriteString("<select")
	if k > 1 && g.rng.IntN(2) == 0 {
		g.nameAttr(g.claim(inner, nil), nextaction.Clickable)
		k--
	}
	g.b.WriteString(">")
	for range k {
		g.b.WriteString("<option")
		g.nameAttr(g.claim(inner, []string{g.segment()}), nextaction.Clickable)
		g.b.WriteString(">")
		g.words(1, 3)
		g.b.WriteString("</option>")
	}
	g.b.WriteString("</select>\n")
}

var (
	inputTypeAttrs = []string{"", "", "text", "search", "email", "number", "tel", "url", "password", "Search", " text "}
	clickInputs    = []string{"submit", "button", "checkbox", "radio", "reset", "image", " Submit "}
	clickTags      = []string{"a", "a", "a", "button", "button", "input", "div", "span", "li", "label", "img", "summary"}
	genRoles       = []string{"button", "link", "checkbox", "radio", "switch", "tab", "menuitem", "option", "combobox", "Button", "presentation link"}
)

// leaf writes one named element of kind k.
func (g *pageGen) leaf(k nextaction.Kind, scope []string) {
	name := g.claim(scope, []string{g.segment()})
	if k == nextaction.Input {
		if g.rng.IntN(4) == 0 {
			g.b.WriteString("<textarea")
			g.nameAttr(name, nextaction.Input)
			g.b.WriteString(">")
			g.words(0, 3)
			g.b.WriteString("</textarea>\n")
			return
		}
		g.b.WriteString("<input")
		if t := pick(g.rng, inputTypeAttrs); t != "" {
			g.b.WriteString(` type="` + t + `"`)
		}
		g.nameAttr(name, nextaction.Input)
		g.b.WriteString(` placeholder="`)
		g.words(1, 3)
		g.b.WriteString("\">\n")
		return
	}
	switch tag := pick(g.rng, clickTags); tag {
	case "input":
		g.b.WriteString(`<input type="` + pick(g.rng, clickInputs) + `"`)
		g.nameAttr(name, nextaction.Clickable)
		g.b.WriteString(` value="`)
		g.words(1, 2)
		g.b.WriteString("\">\n")
	case "img":
		g.b.WriteString(`<img src="/i/` + strconv.Itoa(g.rng.IntN(1000)) + `.jpg"`)
		g.clickAttr()
		g.nameAttr(name, nextaction.Clickable)
		g.b.WriteString(` alt="`)
		g.words(1, 3)
		g.b.WriteString("\">\n")
	case "li":
		g.b.WriteString("<ul><li")
		g.clickAttr()
		g.nameAttr(name, nextaction.Clickable)
		g.b.WriteString(">")
		g.words(1, 5)
		g.b.WriteString("</li></ul>\n")
	default:
		g.b.WriteString("<" + tag)
		switch tag {
		case "a":
			g.b.WriteString(` href="/p/` + strconv.Itoa(g.rng.IntN(100000)) + `"`)
		case "div", "span":
			g.clickAttr()
		}
		g.nameAttr(name, nextaction.Clickable)
		if g.rng.IntN(6) == 0 {
			g.b.WriteString(` aria-label="`)
			g.words(1, 3)
			g.b.WriteString(`">`)
		} else {
			g.b.WriteString(">")
			g.words(1, 6)
		}
		g.b.WriteString("</" + tag + ">\n")
	}
}

// clickAttr writes what makes a non-interactive tag clickable: a control
// role or an onclick attribute.
func (g *pageGen) clickAttr() {
	if g.rng.IntN(3) == 0 {
		g.b.WriteString(` onclick="go(` + strconv.Itoa(g.rng.IntN(100)) + `)"`)
		return
	}
	g.b.WriteString(` role="` + pick(g.rng, genRoles) + `"`)
}

// nameAttr writes the name attribute and records the name.
func (g *pageGen) nameAttr(name string, k nextaction.Kind) {
	g.b.WriteString(` name="` + name + `"`)
	switch k {
	case nextaction.Input:
		g.inputs = append(g.inputs, name)
	case nextaction.Clickable:
		g.clickables = append(g.clickables, name)
	default:
		g.containers = append(g.containers, name)
	}
}

// claim joins scope and leaf into a name of at most nextaction.MaxNameBytes (dropping
// leading segments if needed) that no element has yet, and reserves it.
func (g *pageGen) claim(scope, leaf []string) string {
	segs := append(append([]string(nil), scope...), leaf...)
	name := strings.Join(segs, ".")
	for len(name) > nextaction.MaxNameBytes-8 && len(segs) > 1 {
		segs = segs[1:]
		name = strings.Join(segs, ".")
	}
	base := name
	for i := 2; g.used[name]; i++ {
		name = base + "_" + strconv.Itoa(i)
	}
	g.used[name] = true
	return name
}

// extend returns a copy of scope with n more segments.
func (g *pageGen) extend(scope []string, n int) []string {
	out := append([]string(nil), scope...)
	for range n {
		out = append(out, g.segment())
	}
	return out
}

var nameWords = []string{
	"columbia", "shirt", "view", "product", "refinements", "customer", "reviews",
	"stars", "up", "search", "input", "add", "to", "cart", "buy", "now", "price",
	"filter", "brand", "size", "color", "nav", "menu", "item", "page", "next",
	"prev", "sort", "by", "details", "qty", "checkout", "wishlist", "deal",
}

// segment returns one name segment: [a-z0-9_]+.
func (g *pageGen) segment() string {
	switch g.rng.IntN(6) {
	case 0:
		return strconv.Itoa(g.rng.IntN(10)) + "_" + pick(g.rng, nameWords) + "_" + pick(g.rng, nameWords)
	case 1:
		return pick(g.rng, nameWords) + strconv.Itoa(g.rng.IntN(100))
	case 2, 3:
		return pick(g.rng, nameWords) + "_" + pick(g.rng, nameWords)
	}
	return pick(g.rng, nameWords)
}

var textWords = []string{
	"Columbia", "Men's", "hiking", "shirt", "4.5", "out", "of", "5", "stars",
	"$29.99", "Add", "to", "Cart", "Buy", "Now", "free", "delivery", "Tuesday",
	"in", "stock", "size", "M", "blue", "results", "for", "&", "<new>",
	"sponsored", "reviews", "quick", "look", "—", "Größe", "日本語",
}

var textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")

// words writes between lo and hi (inclusive) escaped label words.
func (g *pageGen) words(lo, hi int) {
	n := lo + g.rng.IntN(hi-lo+1)
	for i := range n {
		if i > 0 {
			g.b.WriteByte(' ')
		}
		w := pick(g.rng, textWords)
		textEscaper.WriteString(&g.b, w)
	}
}

func (g *pageGen) class() {
	if g.rng.IntN(2) == 0 {
		g.b.WriteString(` class="c` + strconv.Itoa(g.rng.IntN(50)) + `"`)
	}
}

// decorate writes unnamed content, slot bytes on average.
func (g *pageGen) decorate() {
	if g.slot <= 0 {
		return
	}
	target := g.b.Len() + g.rng.IntN(2*g.slot+1)
	for g.b.Len() < target {
		switch g.rng.IntN(12) {
		case 0:
			g.b.WriteString(`<img src="/d.png" alt="`)
			g.words(0, 3)
			g.b.WriteString("\">\n")
		case 1:
			g.b.WriteString("<hr><br>\n")
		case 2:
			g.b.WriteString(`<!-- <a name="comment.fake">not an element</a> -->` + "\n")
		case 3:
			g.b.WriteString(`<script>var s = '<button name="script.fake">';</script>` + "\n")
		case 4:
			g.b.WriteString(`<input type="hidden" value="`)
			g.words(1, 2)
			g.b.WriteString("\">\n")
		case 5:
			g.b.WriteString("<h2>")
			g.words(1, 5)
			g.b.WriteString("</h2>\n")
		case 6:
			g.b.WriteString(`<button type="button">`)
			g.words(1, 2)
			g.b.WriteString("</button>\n")
		default:
			g.b.WriteString("<p")
			g.class()
			g.b.WriteString(">")
			g.words(3, 25)
			g.b.WriteString("</p>\n")
		}
	}
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }
