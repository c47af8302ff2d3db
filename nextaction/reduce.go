package nextaction

import (
	"errors"
	"fmt"
	"html"
	"strings"
	"unicode/utf8"

	xhtml "golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// ReduceStage says how far ReducePage had to go.
type ReduceStage int

// The stages of the reduction policy, in the order they are tried.
const (
	// ReduceNone: the page fit and is unchanged.
	ReduceNone ReduceStage = iota
	// ReduceText: every named element and its label were kept; unnamed
	// text was kept from the top of the page down as far as the budget
	// allowed, the rest dropped.
	ReduceText
	// ReduceCap: even the named elements with their labels did not fit;
	// the page keeps the first named elements in document order that fit,
	// and no unnamed text.
	ReduceCap
)

func (s ReduceStage) String() string {
	switch s {
	case ReduceNone:
		return "none"
	case ReduceText:
		return "text"
	case ReduceCap:
		return "cap"
	}
	return fmt.Sprintf("ReduceStage(%d)", int(s))
}

// Reduction tells what ReducePage did to a page.
type Reduction struct {
	Stage ReduceStage
	// BytesBefore and BytesAfter are the page's sizes.
	BytesBefore, BytesAfter int
	// Elements counts the page's named elements (ParsePage's Elements;
	// 0 at ReduceNone, where the page is not parsed); ElementsDropped how
	// many of them the cap left out (ReduceCap only).
	Elements, ElementsDropped int
	// Flat tells that the page was written as a flat list of its named
	// elements (tags replaced, see ReducePage) because the pruned tree did
	// not parse back to the same elements.
	Flat bool
}

// minTextBytes is the least a cut unnamed text keeps; below it the text
// is dropped whole.
const minTextBytes = 16

// ReducePage returns a version of the simplified-HTML page doc of at most
// maxBytes bytes that keeps what a shopper acts on, by one policy applied
// in stages (see ReduceStage):
//
//  1. A page of at most maxBytes is returned unchanged.
//  2. Otherwise the page is rebuilt from its parse tree, keeping every
//     named element (each element of ParsePage's Elements, once) and the
//     elements around them, with only the attributes that decide an
//     element's kind (name, type, role, onclick) and its state (checked,
//     selected, disabled). A target's label (Element.Label) is its only
//     text: inside the element when it is the outermost target, as its
//     aria-label otherwise. Scripts, styles, comments and every unnamed
//     subtree without a named element go. Then the page's unnamed text
//     (text outside targets) is put back from the top of the page down
//     while it fits; the text that reaches the budget is cut there.
//  3. If the named elements with their labels alone exceed maxBytes, the
//     page keeps the first named elements in document order that fit, and
//     no unnamed text.
//
// The result parses (ParsePage) to exactly the original's elements
// (stage 3: the first of them): same names, kinds, tags and labels. When
// the rebuilt tree would not (HTML's parsing rules can move elements), the
// page is written instead as a flat list: each element as a <button>
// (clickable), an <input> (input) or a <div> (container) with its name and
// label, so names, kinds and labels still match, and Reduction.Flat is set.
//
// The work is linear in the size of doc, times log of its named elements
// at stage 3. An error means doc does not parse, or maxBytes < 0.
func ReducePage(doc string, maxBytes int) (string, Reduction, error) {
	r := Reduction{BytesBefore: len(doc)}
	if maxBytes < 0 {
		return "", r, errors.New("reduce page: negative budget")
	}
	if len(doc) <= maxBytes {
		r.BytesAfter = len(doc)
		return doc, r, nil
	}
	want, err := ParsePage(doc)
	if err != nil {
		return "", r, err
	}
	r.Elements = len(want.Elements)
	root, err := xhtml.Parse(strings.NewReader(doc))
	if err != nil {
		return "", r, fmt.Errorf("reduce page: %w", err)
	}
	t := newPageTree(root)
	out, kept := t.reduce(maxBytes)
	r.Stage = ReduceText
	if kept < len(t.named) {
		r.Stage = ReduceCap
	}
	if !sameElements(out, want.Elements[:kept], true) {
		r.Flat = true
		out, kept = flatPage(want.Elements, maxBytes)
		if !sameElements(out, want.Elements[:kept], false) {
			return "", r, errors.New("reduce page: the reduced page does not keep the page's elements")
		}
	}
	r.ElementsDropped = len(want.Elements) - kept
	if r.ElementsDropped > 0 {
		r.Stage = ReduceCap
	}
	r.BytesAfter = len(out)
	return out, r, nil
}

// sameElements reports whether doc parses to exactly els (tags compared
// when withTags).
func sameElements(doc string, els []Element, withTags bool) bool {
	p, err := ParsePage(doc)
	if err != nil || len(p.Elements) != len(els) {
		return false
	}
	for i, e := range p.Elements {
		w := els[i]
		if e.Name != w.Name || e.Kind != w.Kind || e.Label != w.Label || (withTags && e.Tag != w.Tag) {
			return false
		}
	}
	return true
}

// flatPage writes the first elements of els that fit in maxBytes as a flat
// list, and returns it with how many it holds.
func flatPage(els []Element, maxBytes int) (string, int) {
	var b strings.Builder
	for i, e := range els {
		var s string
		name := html.EscapeString(e.Name)
		switch e.Kind {
		case Clickable:
			s = `<button name="` + name + `">` + html.EscapeString(e.Label) + "</button>\n"
		case Input:
			s = `<input name="` + name + `"`
			if e.Label != "" {
				s += ` aria-label="` + html.EscapeString(e.Label) + `"`
			}
			s += ">\n"
		default:
			s = `<div name="` + name + `"></div>` + "\n"
		}
		if b.Len()+len(s) > maxBytes {
			return b.String(), i
		}
		b.WriteString(s)
	}
	return b.String(), len(els)
}

// pageTree is a parsed page annotated for the reduction.
type pageTree struct {
	root *xhtml.Node
	// named are the nodes of ParsePage's Elements, in document order;
	// label[n] is the label of a target among them.
	named   []*xhtml.Node
	isNamed map[*xhtml.Node]bool
	label   map[*xhtml.Node]string
	// target[n]: n is a named target; inTarget[n]: some ancestor of n is.
	target, inTarget map[*xhtml.Node]bool
	// texts are the unnamed texts that may be put back, in document order.
	texts []*xhtml.Node
	// keep is the set of nodes written; text[n] the text written for a
	// kept text node (all of it, or its start).
	keep map[*xhtml.Node]bool
	text map[*xhtml.Node]string
}

// rawTextTags hold text that is not markup (or not shown): their text is
// never put back.
var rawTextTags = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Template: true, atom.Noscript: true,
	atom.Xmp: true, atom.Iframe: true, atom.Noembed: true, atom.Noframes: true, atom.Plaintext: true,
}

// labelAsAttr are tags whose label is written as aria-label, not text:
// void elements, and elements where HTML parsing would move the text.
var labelAsAttr = map[atom.Atom]bool{
	atom.Area: true, atom.Base: true, atom.Br: true, atom.Col: true, atom.Embed: true, atom.Hr: true,
	atom.Img: true, atom.Input: true, atom.Link: true, atom.Meta: true, atom.Source: true, atom.Track: true,
	atom.Wbr: true, atom.Table: true, atom.Tbody: true, atom.Thead: true, atom.Tfoot: true, atom.Tr: true,
	atom.Colgroup: true, atom.Select: true, atom.Frameset: true, atom.Html: true, atom.Head: true,
}

// voidTags have no end tag.
var voidTags = map[atom.Atom]bool{
	atom.Area: true, atom.Base: true, atom.Br: true, atom.Col: true, atom.Embed: true, atom.Hr: true,
	atom.Img: true, atom.Input: true, atom.Link: true, atom.Meta: true, atom.Source: true, atom.Track: true,
	atom.Wbr: true, atom.Param: true, atom.Keygen: true,
}

// keptAttrs are the attributes written on named elements: what decides
// the kind, and state.
var keptAttrs = []string{"name", "type", "role", "onclick", "checked", "selected", "disabled"}

// newPageTree annotates root in one pre-order walk. The winner of each
// name is chosen as ParsePage chooses it.
func newPageTree(root *xhtml.Node) *pageTree {
	t := &pageTree{
		root: root, label: map[*xhtml.Node]string{},
		target: map[*xhtml.Node]bool{}, inTarget: map[*xhtml.Node]bool{},
	}
	rawText := map[*xhtml.Node]bool{}
	at := map[string]int{}
	for n := root; n != nil; n = nextNode(n, root) {
		if p := n.Parent; p != nil {
			t.inTarget[n] = t.inTarget[p] || t.target[p]
			rawText[n] = rawText[p] || (p.Type == xhtml.ElementNode && rawTextTags[p.DataAtom])
		}
		switch n.Type {
		case xhtml.TextNode:
			if !t.inTarget[n] && !rawText[n] && strings.TrimSpace(n.Data) != "" {
				t.texts = append(t.texts, n)
			}
			continue
		case xhtml.ElementNode:
		default:
			continue
		}
		name, ok := attr(n, "name")
		if !ok || !SafeName(name) {
			continue
		}
		k := kindOf(n)
		if i, seen := at[name]; seen {
			if k == Container || kindOf(t.named[i]) != Container {
				continue
			}
			t.named[i] = nil // a target replaces the container
		}
		at[name] = len(t.named)
		t.named = append(t.named, n)
		if k != Container {
			t.target[n] = true
			t.label[n] = label(n)
		}
	}
	named := t.named[:0]
	t.isNamed = make(map[*xhtml.Node]bool, len(t.named))
	for _, n := range t.named {
		if n != nil {
			named = append(named, n)
			t.isNamed[n] = true
		}
	}
	t.named = named
	return t
}

// reduce writes the page within maxBytes and returns it with how many
// named elements it keeps.
func (t *pageTree) reduce(maxBytes int) (string, int) {
	out := t.skeleton(len(t.named))
	if len(out) > maxBytes {
		// Stage 3: the most named elements that fit (binary search on the
		// prefix; the size grows with it).
		lo, hi := 0, len(t.named)
		for lo < hi {
			mid := (lo + hi + 1) / 2
			if len(t.skeleton(mid)) <= maxBytes {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		return t.skeleton(lo), lo
	}
	t.addText(maxBytes - len(out))
	out = t.render()
	if len(out) > maxBytes { // cannot happen: the costs are exact
		out = t.skeleton(len(t.named))
	}
	return out, len(t.named)
}

// skeleton marks the first k named elements and their ancestors and
// renders them.
func (t *pageTree) skeleton(k int) string {
	t.keep = map[*xhtml.Node]bool{}
	t.text = map[*xhtml.Node]string{}
	for _, n := range t.named[:k] {
		t.keepUp(n)
	}
	return t.render()
}

// keepUp marks n and its ancestors, and returns the bytes of the tags newly
// marked (ancestors are written without attributes).
func (t *pageTree) keepUp(n *xhtml.Node) int {
	cost := 0
	for ; n != nil && !t.keep[n]; n = n.Parent {
		t.keep[n] = true
		if n.Type == xhtml.ElementNode && !wrapper(n) {
			cost += len(n.Data)*2 + 5 // <tag></tag>
		}
	}
	return cost
}

// wrapper reports whether n is html, head or body, which are not written
// (parsing a page always makes them).
func wrapper(n *xhtml.Node) bool {
	return n.Type == xhtml.ElementNode && n.Namespace == "" &&
		(n.DataAtom == atom.Html || n.DataAtom == atom.Head || n.DataAtom == atom.Body)
}

// addText puts unnamed text back in document order within budget bytes;
// the text that does not fit is cut, and nothing after it is kept.
func (t *pageTree) addText(budget int) {
	for _, n := range t.texts {
		p := n.Parent
		tags := 0
		var added []*xhtml.Node
		for a := p; a != nil && !t.keep[a]; a = a.Parent {
			added = append(added, a)
			if !wrapper(a) {
				tags += len(a.Data)*2 + 5
			}
		}
		text := strings.ToValidUTF8(n.Data, "\uFFFD")
		if cost := tags + len(html.EscapeString(text)); cost <= budget {
			budget -= cost
			t.keepUp(n)
			t.text[n] = text
			continue
		}
		if room := budget - tags; room >= minTextBytes {
			t.keepUp(n)
			t.text[n] = cutEscaped(text, room)
		}
		return
	}
}

// cutEscaped returns the longest start of s (valid UTF-8), cut at a
// character boundary, whose escaped form takes at most max bytes.
func cutEscaped(s string, max int) string {
	n := 0
	for i, r := range s {
		w := utf8.RuneLen(r)
		switch r {
		case '<', '>':
			w = 4
		case '&':
			w = 5
		case '"', '\'':
			w = 5
		}
		if n+w > max {
			return s[:i]
		}
		n += w
	}
	return s
}

// render writes the kept nodes.
func (t *pageTree) render() string {
	var b strings.Builder
	t.renderChildren(&b, t.root)
	return b.String()
}

// renderChildren writes n's kept children. It recurses once per level of
// the kept tree; html.Parse bounds the depth of its trees (512 levels).
func (t *pageTree) renderChildren(b *strings.Builder, n *xhtml.Node) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if !t.keep[c] {
			continue
		}
		switch {
		case c.Type == xhtml.TextNode:
			b.WriteString(html.EscapeString(t.text[c]))
		case c.Type != xhtml.ElementNode, wrapper(c):
			t.renderChildren(b, c)
		default:
			t.renderElement(b, c)
		}
	}
}

func (t *pageTree) renderElement(b *strings.Builder, n *xhtml.Node) {
	b.WriteString("<" + n.Data)
	if t.isNamed[n] {
		for _, key := range keptAttrs {
			if v, ok := attr(n, key); ok {
				if key == "onclick" {
					v = "" // its presence makes a clickable; the script does not matter
				}
				b.WriteString(" " + key + `="` + html.EscapeString(v) + `"`)
			}
		}
	}
	lbl, isTarget := t.label[n]
	asText := isTarget && !t.inTarget[n] && !labelAsAttr[n.DataAtom] && n.Namespace == ""
	if isTarget && !asText && lbl != "" {
		b.WriteString(` aria-label="` + html.EscapeString(lbl) + `"`)
	}
	b.WriteString(">")
	if voidTags[n.DataAtom] && n.Namespace == "" {
		return
	}
	if asText {
		b.WriteString(html.EscapeString(lbl))
	}
	t.renderChildren(b, n)
	b.WriteString("</" + n.Data + ">")
}
