package nextaction

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Kind tells what a shopper can do with an element. The zero Kind is not a
// valid kind.
type Kind int

// The element kinds.
const (
	// Clickable elements are the target of click actions.
	Clickable Kind = iota + 1
	// Input elements (text-like <input>, <textarea>) are the target of
	// type_and_submit actions.
	Input
)

func (k Kind) String() string {
	switch k {
	case Clickable:
		return "clickable"
	case Input:
		return "input"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Limits on names and labels.
const (
	// MaxNameBytes is the longest element name ParsePage keeps.
	MaxNameBytes = 256
	// MaxLabelBytes is the longest Element.Label.
	MaxLabelBytes = 80
)

// Element is one named element of a page.
type Element struct {
	// Name is the element's name attribute, verbatim. It is safe to write
	// inside a JSON string without escaping (see ParsePage).
	Name string
	Kind Kind
	// Tag is the lower-case tag name (a, button, input, ...).
	Tag string
	// Label is the element's visible text with white space collapsed, or
	// else its aria-label, placeholder, value, alt or title attribute,
	// truncated to MaxLabelBytes at a character boundary. It may be empty.
	Label string
}

// Page is the set of named elements of a simplified-HTML page, in document
// order, each name once.
type Page struct {
	Elements []Element
	// Dropped counts elements whose name attribute was unsafe and so left
	// out: empty, longer than MaxNameBytes, or containing '"', '\\', a
	// control character or invalid UTF-8.
	Dropped int
	// Duplicates counts elements left out because an earlier element had
	// the same name.
	Duplicates int
}

// inputTypes are the <input> types that take typed text. A missing or empty
// type attribute is text too.
var inputTypes = map[string]bool{
	"text": true, "search": true, "email": true, "number": true,
	"tel": true, "url": true, "password": true,
}

// ParsePage parses simplified HTML (a whole document or a fragment) into its
// named elements. Every element with a name attribute is one: <textarea>
// and <input> of type text, search, email, number, tel, url or password (or
// none) are Inputs; everything else (a, button, other inputs, select,
// option, div, span, li, label ...) is Clickable. The first element with a
// given name wins.
//
// Names are later emitted verbatim inside JSON strings by the constrained
// decoder, so names that are empty, longer than MaxNameBytes, or contain
// '"', '\\', control characters or invalid UTF-8 are dropped and counted in
// Page.Dropped.
//
// A page without named elements is valid; the only action legal on it is
// terminate. ParsePage enforces no size limit: the caller does.
func ParsePage(doc string) (*Page, error) {
	root, err := html.Parse(strings.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("parse page: %w", err)
	}
	p := &Page{}
	seen := make(map[string]bool)
	for n := root; n != nil; n = nextNode(n, root) {
		if n.Type != html.ElementNode {
			continue
		}
		name, ok := attr(n, "name")
		if !ok {
			continue
		}
		if !SafeName(name) {
			p.Dropped++
			continue
		}
		if seen[name] {
			p.Duplicates++
			continue
		}
		seen[name] = true
		p.Elements = append(p.Elements, Element{Name: name, Kind: kindOf(n), Tag: n.Data, Label: label(n)})
	}
	return p, nil
}

// SafeName reports whether name can be an element name: non-empty, at most
// MaxNameBytes, valid UTF-8 without '"', '\\' or control characters.
func SafeName(name string) bool {
	if name == "" || len(name) > MaxNameBytes || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r == '"' || r == '\\' || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// nextNode returns the node after n in a pre-order walk of root's subtree,
// or nil. It does not recurse, so deep documents cannot exhaust the stack.
func nextNode(n, root *html.Node) *html.Node {
	if n.FirstChild != nil {
		return n.FirstChild
	}
	for ; n != root; n = n.Parent {
		if n.NextSibling != nil {
			return n.NextSibling
		}
	}
	return nil
}

// attr returns the value of n's attribute key (in the HTML namespace).
func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func kindOf(n *html.Node) Kind {
	switch n.DataAtom {
	case atom.Textarea:
		return Input
	case atom.Input:
		if t, _ := attr(n, "type"); t == "" || inputTypes[strings.ToLower(strings.TrimSpace(t))] {
			return Input
		}
	}
	return Clickable
}

// label returns n's collapsed visible text, or else the first non-blank
// labelling attribute, truncated to MaxLabelBytes.
func label(n *html.Node) string {
	if s := visibleText(n); s != "" {
		return s
	}
	for _, key := range []string{"aria-label", "placeholder", "value", "alt", "title"} {
		if v, ok := attr(n, key); ok {
			if s := truncate(collapse(v), MaxLabelBytes); s != "" {
				return s
			}
		}
	}
	return ""
}

// visibleText collects the text under n, skipping script, style, template
// and noscript, with runs of white space collapsed to one space. It stops
// once it has enough for a label.
func visibleText(n *html.Node) string {
	var b strings.Builder
	for c := n.FirstChild; c != nil; {
		if c.Type == html.ElementNode {
			switch c.DataAtom {
			case atom.Script, atom.Style, atom.Template, atom.Noscript:
				c = skip(c, n)
				continue
			}
		}
		if c.Type == html.TextNode {
			for _, w := range strings.Fields(c.Data) {
				if b.Len() > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(w)
			}
			if b.Len() > MaxLabelBytes {
				break
			}
		}
		c = nextNode(c, n)
	}
	return truncate(b.String(), MaxLabelBytes)
}

// skip returns the node after n's subtree in a pre-order walk of root.
func skip(n, root *html.Node) *html.Node {
	for ; n != root; n = n.Parent {
		if n.NextSibling != nil {
			return n.NextSibling
		}
	}
	return nil
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }

// truncate cuts s to at most max bytes without splitting a character and
// replaces invalid UTF-8.
func truncate(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return strings.TrimRight(s[:i], " ")
}

// Clickables returns the names of the clickable elements in document order.
func (p *Page) Clickables() []string { return p.names(Clickable) }

// Inputs returns the names of the input elements in document order.
func (p *Page) Inputs() []string { return p.names(Input) }

func (p *Page) names(k Kind) []string {
	var out []string
	for _, e := range p.Elements {
		if e.Kind == k {
			out = append(out, e.Name)
		}
	}
	return out
}

// Has reports whether the page has an element with this name and kind.
func (p *Page) Has(name string, k Kind) bool {
	for _, e := range p.Elements {
		if e.Name == name {
			return e.Kind == k
		}
	}
	return false
}

// Key identifies the page's element set: the hex SHA-256 of its (kind,
// name) pairs in name order. Two pages with the same named elements of the
// same kinds have the same Key whatever their order, tags, labels and
// other content, so it is the cache key of the page's decoding constraint.
func (p *Page) Key() string {
	els := slices.Clone(p.Elements)
	slices.SortFunc(els, func(a, b Element) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return int(a.Kind) - int(b.Kind)
	})
	h := sha256.New()
	var buf []byte
	for _, e := range els {
		buf = binary.AppendUvarint(buf[:0], uint64(e.Kind))
		buf = binary.AppendUvarint(buf, uint64(len(e.Name)))
		buf = append(buf, e.Name...)
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))
}
