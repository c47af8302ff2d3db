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
	// Container elements carry a name only because the hierarchy of names
	// is built from them (a <div name="columbia_shirt"> around
	// columbia_shirt.view_product): they are never the target of an action.
	Container
)

func (k Kind) String() string {
	switch k {
	case Clickable:
		return "clickable"
	case Input:
		return "input"
	case Container:
		return "container"
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
	// truncated to MaxLabelBytes at a character boundary. It may be empty;
	// it is always empty for a Container.
	Label string
}

// Page is the set of named elements of a simplified-HTML page, in document
// order, each name once.
type Page struct {
	// Elements are the named elements: the targets (Clickable and Input)
	// and the named containers.
	Elements []Element
	// Dropped counts elements whose name attribute was unsafe and so left
	// out: empty, longer than MaxNameBytes, or containing '"', '\\', a
	// control character or invalid UTF-8.
	Dropped int
	// Duplicates counts elements left out because another element had the
	// same name (see ParsePage).
	Duplicates int
}

// The target rule. An <input>'s type is read case-insensitively with
// surrounding space trimmed; a missing, empty or unknown type is a text
// field, as in browsers.
var (
	// buttonInputTypes are clicked; the text-like types (text, search,
	// email, number, tel, url, password) and unknown ones are typed into.
	buttonInputTypes = map[string]bool{
		"button": true, "submit": true, "reset": true, "image": true, "checkbox": true, "radio": true,
	}
	// otherInputTypes are neither typed into nor clicked as such: a named
	// one is a container unless a control role or onclick makes it
	// clickable.
	otherInputTypes = map[string]bool{
		"hidden": true, "file": true, "color": true, "range": true, "date": true,
		"datetime-local": true, "month": true, "week": true, "time": true,
	}
	// controlRoles are the ARIA roles of a control: any element with one
	// is clickable.
	controlRoles = map[string]bool{
		"button": true, "link": true, "checkbox": true, "radio": true, "switch": true,
		"tab": true, "menuitem": true, "option": true, "combobox": true,
	}
)

// ParsePage parses simplified HTML (a whole document or a fragment) into its
// named elements, the way the paper's pages are built: every interactable
// element carries a hierarchical name made from the names of its
// ancestors, and the ancestors (containers) carry names too, only because
// the hierarchy is built from them.
//
//	<div name="columbia_shirt">                          a Container: never a target
//	  <a name="columbia_shirt.view_product">View</a>     Clickable
//	</div>
//	<input name="search_input">                          Input
//
// Each element with a name attribute is exactly one of:
//   - Input (the target of type_and_submit): <textarea>, and <input> whose
//     type is text, search, email, number, tel, url, password, missing,
//     empty or unknown;
//   - Clickable (the target of click): <a>, <button>, <select>, <option>,
//     <summary>, <label>, <input> of type button, submit, reset, image,
//     checkbox or radio, and any other element with an ARIA role of a
//     control (button, link, checkbox, radio, switch, tab, menuitem,
//     option, combobox; any token of the role attribute) or an onclick
//     attribute;
//   - Container: anything else (div, span, section, li, ul, form, table,
//     img, hidden and other non-text inputs ...), whatever it contains.
//
// A page whose named elements are all containers allows only terminate.
// When several elements share a name, a target wins over a container and
// otherwise the first in document order wins; the others count in
// Page.Duplicates.
//
// Names are later emitted verbatim inside JSON strings by the constrained
// decoder, so names that are empty, longer than MaxNameBytes, or contain
// '"', '\\', control characters or invalid UTF-8 are dropped and counted in
// Page.Dropped.
//
// A page without named elements is valid; the only action legal on it is
// terminate. ParsePage enforces no size limit (the caller does); its work
// is linear in the size of the document.
func ParsePage(doc string) (*Page, error) {
	root, err := html.Parse(strings.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("parse page: %w", err)
	}
	p := &Page{}
	at := make(map[string]int) // name -> index in p.Elements
	removed := 0               // containers replaced by a later target
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
		k := kindOf(n)
		if i, seen := at[name]; seen {
			p.Duplicates++
			if k == Container || p.Elements[i].Kind != Container {
				continue
			}
			p.Elements[i].Kind = 0 // a target replaces the container
			removed++
		}
		e := Element{Name: name, Kind: k, Tag: n.Data}
		if k != Container {
			e.Label = label(n)
		}
		at[name] = len(p.Elements)
		p.Elements = append(p.Elements, e)
	}
	if removed > 0 {
		p.Elements = slices.DeleteFunc(p.Elements, func(e Element) bool { return e.Kind == 0 })
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
		t, _ := attr(n, "type")
		t = strings.ToLower(strings.TrimSpace(t))
		switch {
		case buttonInputTypes[t]:
			return Clickable
		case !otherInputTypes[t]:
			return Input // text-like, missing or unknown
		}
	case atom.A, atom.Button, atom.Select, atom.Option, atom.Summary, atom.Label:
		return Clickable
	}
	if _, ok := attr(n, "onclick"); ok {
		return Clickable
	}
	if role, ok := attr(n, "role"); ok {
		for _, r := range strings.Fields(role) {
			if controlRoles[strings.ToLower(r)] {
				return Clickable
			}
		}
	}
	return Container
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

// Bounds of the work one label may take, so that parsing stays linear in
// the page whatever the nesting of named elements: a label looks at most
// at labelNodes nodes and labelScanBytes bytes of text.
const (
	labelNodes     = 256
	labelScanBytes = 4096
)

// visibleText collects the text under n, skipping script, style, template
// and noscript, with runs of white space collapsed to one space. It stops
// once it has enough for a label, or its budget is spent.
func visibleText(n *html.Node) string {
	var b strings.Builder
	scan := labelScanBytes
	for c, nodes := n.FirstChild, 0; c != nil && nodes < labelNodes && scan > 0 && b.Len() <= MaxLabelBytes; nodes++ {
		if c.Type == html.ElementNode {
			switch c.DataAtom {
			case atom.Script, atom.Style, atom.Template, atom.Noscript:
				c = skip(c, n)
				continue
			}
		}
		if c.Type == html.TextNode {
			text := c.Data[:min(len(c.Data), scan)]
			scan -= len(text)
			for _, w := range strings.Fields(text) {
				if b.Len() > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(w)
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

// Containers returns the names of the named containers in document order.
func (p *Page) Containers() []string { return p.names(Container) }

// Has reports whether the page has an element with this name and kind.
func (p *Page) Has(name string, k Kind) bool {
	for _, e := range p.Elements {
		if e.Name == name {
			return e.Kind == k
		}
	}
	return false
}

// Key identifies the page's target set: the hex SHA-256 of its (kind,
// name) pairs of clickables and inputs in name order. Two pages with the
// same targets have the same Key whatever their order, tags, labels,
// containers and other content, so it is the cache key of the page's
// decoding constraint.
func (p *Page) Key() string {
	els := slices.DeleteFunc(slices.Clone(p.Elements), func(e Element) bool { return e.Kind == Container })
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
