package nextaction_test

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nextact/nextact/nextaction"
	"github.com/nextact/nextact/nextaction/nextactiontest"
)

const (
	click     = nextaction.Clickable
	input     = nextaction.Input
	container = nextaction.Container
)

func TestParsePage(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", nextaction.MaxNameBytes)
	tests := []struct {
		name       string
		html       string
		want       []nextaction.Element
		dropped    int
		duplicates int
	}{
		{
			name: "no named elements",
			html: `<html><body><p>Nothing to do here</p><a href="/x">link</a></body></html>`,
		},
		{
			name: "empty document",
			html: ``,
		},
		{
			name: "fragment with kinds",
			html: `<div name="columbia_shirt"><a name="columbia_shirt.view_product" href="/p">  View
				 product </a></div>
				<input name="search_input" placeholder="Search Amazon">
				<button name="search_button">Go</button>`,
			want: []nextaction.Element{
				{Name: "columbia_shirt", Kind: container, Tag: "div"},
				{Name: "columbia_shirt.view_product", Kind: click, Tag: "a", Label: "View product"},
				{Name: "search_input", Kind: input, Tag: "input", Label: "Search Amazon"},
				{Name: "search_button", Kind: click, Tag: "button", Label: "Go"},
			},
		},
		{
			name: "input types",
			html: `<input name="t0"><input type="" name="t1"><input type="TEXT" name="t2"><input type="search" name="t3">
				<input type="email" name="t4"><input type="number" name="t5"><input type="tel" name="t6">
				<input type="url" name="t7"><input type="password" name="t8"><textarea name="t9">hi</textarea>
				<input type="submit" name="c0" value="Buy"><input type="checkbox" name="c1" aria-label="Prime">
				<input type="radio" name="c2"><input type="button" name="c3"><input type="hidden" name="c4">
				<select name="c5"><option name="c5.o1">One</option></select>`,
			want: []nextaction.Element{
				{Name: "t0", Kind: input, Tag: "input"},
				{Name: "t1", Kind: input, Tag: "input"},
				{Name: "t2", Kind: input, Tag: "input"},
				{Name: "t3", Kind: input, Tag: "input"},
				{Name: "t4", Kind: input, Tag: "input"},
				{Name: "t5", Kind: input, Tag: "input"},
				{Name: "t6", Kind: input, Tag: "input"},
				{Name: "t7", Kind: input, Tag: "input"},
				{Name: "t8", Kind: input, Tag: "input"},
				{Name: "t9", Kind: input, Tag: "textarea", Label: "hi"},
				{Name: "c0", Kind: click, Tag: "input", Label: "Buy"},
				{Name: "c1", Kind: click, Tag: "input", Label: "Prime"},
				{Name: "c2", Kind: click, Tag: "input"},
				{Name: "c3", Kind: click, Tag: "input"},
				{Name: "c4", Kind: container, Tag: "input"},
				{Name: "c5", Kind: click, Tag: "select", Label: "One"},
				{Name: "c5.o1", Kind: click, Tag: "option", Label: "One"},
			},
		},
		{
			name: "labels",
			html: `<a name="a1"><img src="x.png" alt="ignored"> <span>Deal</span> &amp; <b>more</b></a>
				<button name="a2" aria-label="  Close   dialog "></button>
				<li name="a3" role="menuitem"><script>var x = 1;</script><style>p{}</style>Visible</li>
				<a name="a4">` + strings.Repeat("x", 100) + `</a>
				<a name="a5">` + strings.Repeat("é", 50) + `</a>
				<span name="a6" title="T" onclick="f()">  </span>`,
			want: []nextaction.Element{
				{Name: "a1", Kind: click, Tag: "a", Label: "Deal & more"},
				{Name: "a2", Kind: click, Tag: "button", Label: "Close dialog"},
				{Name: "a3", Kind: click, Tag: "li", Label: "Visible"},
				{Name: "a4", Kind: click, Tag: "a", Label: strings.Repeat("x", 80)},
				{Name: "a5", Kind: click, Tag: "a", Label: strings.Repeat("é", 40)},
				{Name: "a6", Kind: click, Tag: "span", Label: "T"},
			},
		},
		{
			name: "script and comment are not elements",
			html: `<script>document.write('<a name="s1">x</a>')</script><!-- <a name="c1">x</a> -->
				<noscript><a name="n1">x</a></noscript><a name="real">x</a>`,
			// With scripting on (the parser's default, as in a browser),
			// noscript content is text too.
			want: []nextaction.Element{
				{Name: "real", Kind: click, Tag: "a", Label: "x"},
			},
		},
		{
			name: "duplicates keep the first",
			html: `<input name="dup" placeholder="first"><a name="dup">second</a><a name="dup">third</a>`,
			want: []nextaction.Element{
				{Name: "dup", Kind: input, Tag: "input", Label: "first"},
			},
			duplicates: 2,
		},
		{
			name: "unsafe names are dropped",
			html: `<a name="">empty</a><a name="` + long + `b">long</a><a name="` + long + `">max</a>
				<a name="q&quot;uote">q</a><a name="back\slash">b</a><a name="tab&#9;x">t</a>
				<a name="nl
x">n</a><a name="del` + "\x7f" + `">d</a><a name="c1` + "\u0085" + `">c</a>
				<a name="bad` + "\xff" + `utf8">u</a><a name="ok.name-with spaces &lt;&gt;&amp;">fine</a>`,
			want: []nextaction.Element{
				{Name: long, Kind: click, Tag: "a", Label: "max"},
				{Name: "ok.name-with spaces <>&", Kind: click, Tag: "a", Label: "fine"},
			},
			dropped: 9,
		},
		{
			name: "name attribute without value is empty",
			html: `<a name>x</a><a NAME="upper">y</a>`,
			want: []nextaction.Element{
				{Name: "upper", Kind: click, Tag: "a", Label: "y"},
			},
			dropped: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := nextaction.ParsePage(tt.html)
			if err != nil {
				t.Fatalf("ParsePage: %v", err)
			}
			if !slices.Equal(p.Elements, tt.want) {
				t.Errorf("elements:\n got %+v\nwant %+v", p.Elements, tt.want)
			}
			if p.Dropped != tt.dropped || p.Duplicates != tt.duplicates {
				t.Errorf("dropped, duplicates = %d, %d; want %d, %d", p.Dropped, p.Duplicates, tt.dropped, tt.duplicates)
			}
			for _, e := range p.Elements {
				if !nextaction.SafeName(e.Name) {
					t.Errorf("kept unsafe name %q", e.Name)
				}
				if len(e.Label) > nextaction.MaxLabelBytes {
					t.Errorf("label of %q is %d bytes", e.Name, len(e.Label))
				}
			}
		})
	}
}

func TestPageAccessors(t *testing.T) {
	t.Parallel()
	p, err := nextaction.ParsePage(`<a name="b">1</a><input name="q"><button name="a">2</button><textarea name="n"></textarea>`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Clickables(), []string{"b", "a"}; !slices.Equal(got, want) {
		t.Errorf("Clickables = %q, want %q", got, want)
	}
	if got, want := p.Inputs(), []string{"q", "n"}; !slices.Equal(got, want) {
		t.Errorf("Inputs = %q, want %q", got, want)
	}
	tests := []struct {
		name string
		kind nextaction.Kind
		want bool
	}{
		{"a", click, true},
		{"b", click, true},
		{"q", input, true},
		{"n", input, true},
		{"a", input, false},
		{"q", click, false},
		{"missing", click, false},
		{"", click, false},
	}
	for _, tt := range tests {
		if got := p.Has(tt.name, tt.kind); got != tt.want {
			t.Errorf("Has(%q, %v) = %v, want %v", tt.name, tt.kind, got, tt.want)
		}
	}
}

func TestPageKey(t *testing.T) {
	t.Parallel()
	key := func(t *testing.T, html string) string {
		t.Helper()
		p, err := nextaction.ParsePage(html)
		if err != nil {
			t.Fatal(err)
		}
		return p.Key()
	}
	base := `<a name="x">X</a><input name="q"><button name="y">Y</button>`
	tests := []struct {
		name  string
		other string
		same  bool
	}{
		{"identical", base, true},
		{"other order, tags, labels, content", `<p>hello</p><button name="y">why</button><label name="x"></label><textarea name="q">t</textarea>`, true},
		{"containers ignored", `<div name="box"><a name="x">X</a><input name="q"><section name="s"><button name="y">Y</button></section></div>`, true},
		{"container replaced by a target", `<div name="q"><a name="x">X</a><button name="y">Y</button></div><input name="q">`, true},
		{"unsafe and duplicate names ignored", base + `<a name="x">again</a><a name='a"b'>q</a>`, true},
		{"kind differs", `<a name="x">X</a><a name="q"></a><button name="y">Y</button>`, false},
		{"name added", base + `<a name="z">Z</a>`, false},
		{"name removed", `<a name="x">X</a><input name="q">`, false},
		{"names that concatenate alike", `<a name="xq">X</a><input name="">`, false},
		{"empty page", `<p>nothing</p>`, false},
	}
	k := key(t, base)
	if len(k) != 64 {
		t.Fatalf("Key = %q, want 64 hex digits", k)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := key(t, tt.other) == k; got != tt.same {
				t.Errorf("same key = %v, want %v", got, tt.same)
			}
		})
	}
	if key(t, "") != key(t, "<p>x</p>") {
		t.Error("pages without elements have different keys")
	}
}

func TestRandomPageParses(t *testing.T) {
	t.Parallel()
	opts := []nextactiontest.PageOptions{
		{},
		{MaxClickables: 200, MaxInputs: 10, ApproxBytes: 60000},
		{MaxClickables: 3, MaxInputs: -1, ApproxBytes: -1},
		{MaxClickables: -1, MaxInputs: -1},
	}
	for seed := range uint64(1000) {
		o := opts[seed%uint64(len(opts))]
		html, clickables, inputs, _ := nextactiontest.RandomPage(rand.New(rand.NewPCG(seed, 7)), o)
		p, err := nextaction.ParsePage(html)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if got := p.Clickables(); !slices.Equal(got, clickables) {
			t.Fatalf("seed %d: clickables\n got %q\nwant %q\n%s", seed, got, clickables, html)
		}
		if got := p.Inputs(); !slices.Equal(got, inputs) {
			t.Fatalf("seed %d: inputs\n got %q\nwant %q\n%s", seed, got, inputs, html)
		}
		if p.Dropped != 0 || p.Duplicates != 0 {
			t.Fatalf("seed %d: dropped %d, duplicates %d", seed, p.Dropped, p.Duplicates)
		}
		if o.MaxInputs < 0 && len(inputs) > 0 || o.MaxClickables < 0 && len(clickables) > 0 {
			t.Fatalf("seed %d: %d clickables, %d inputs with options %+v", seed, len(clickables), len(inputs), o)
		}
		if o.ApproxBytes == 0 && len(html) < nextactiontest.DefaultApproxBytes {
			t.Fatalf("seed %d: %d bytes, want at least %d", seed, len(html), nextactiontest.DefaultApproxBytes)
		}
	}
}

func TestRandomPageDeterministic(t *testing.T) {
	t.Parallel()
	a, _, _, _ := nextactiontest.RandomPage(rand.New(rand.NewPCG(1, 2)), nextactiontest.PageOptions{})
	b, _, _, _ := nextactiontest.RandomPage(rand.New(rand.NewPCG(1, 2)), nextactiontest.PageOptions{})
	c, _, _, _ := nextactiontest.RandomPage(rand.New(rand.NewPCG(1, 3)), nextactiontest.PageOptions{})
	if a != b {
		t.Error("same seed, different pages")
	}
	if a == c {
		t.Error("different seeds, same page")
	}
}

// TestRandomPageVariety checks that generated pages cover what the parser
// must handle: both kinds, deep names, empty pages.
func TestRandomPageVariety(t *testing.T) {
	t.Parallel()
	var empty, deep, maxDots, inputsSeen int
	for seed := range uint64(300) {
		_, cs, is, _ := nextactiontest.RandomPage(rand.New(rand.NewPCG(seed, 0)), nextactiontest.PageOptions{MaxClickables: 12, MaxInputs: 2})
		if len(cs)+len(is) == 0 {
			empty++
		}
		inputsSeen += len(is)
		for _, n := range append(cs, is...) {
			d := strings.Count(n, ".")
			if d >= 4 {
				deep++
			}
			maxDots = max(maxDots, d)
		}
	}
	if empty == 0 || deep == 0 || inputsSeen == 0 {
		t.Errorf("empty pages %d, deep names %d (max %d dots), inputs %d: want all > 0", empty, deep, maxDots, inputsSeen)
	}
}

func BenchmarkParsePage(b *testing.B) {
	for _, size := range []int{8 << 10, 64 << 10} {
		html, _, _, _ := nextactiontest.RandomPage(rand.New(rand.NewPCG(1, 1)), nextactiontest.PageOptions{MaxClickables: 200, MaxInputs: 5, ApproxBytes: size})
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			b.SetBytes(int64(len(html)))
			for b.Loop() {
				p, err := nextaction.ParsePage(html)
				if err != nil {
					b.Fatal(err)
				}
				_ = p.Key()
			}
		})
	}
}

// TestTargetRule is the rule of what a named element is, tag by tag, input
// type by input type and role by role.
func TestTargetRule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		html string
		want nextaction.Kind
	}{
		// Clickable tags.
		{`<a name="e">x</a>`, click},
		{`<a name="e" href="/p">x</a>`, click},
		{`<button name="e">x</button>`, click},
		{`<select name="e"><option>1</option></select>`, click},
		{`<select><option name="e">1</option></select>`, click},
		{`<details><summary name="e">More</summary></details>`, click},
		{`<label name="e">Size</label>`, click},
		// Inputs by type.
		{`<input name="e">`, input},
		{`<input type="" name="e">`, input},
		{`<input type="text" name="e">`, input},
		{`<input type=" SEARCH " name="e">`, input},
		{`<input type="email" name="e">`, input},
		{`<input type="number" name="e">`, input},
		{`<input type="tel" name="e">`, input},
		{`<input type="url" name="e">`, input},
		{`<input type="password" name="e">`, input},
		{`<input type="no-such-type" name="e">`, input}, // browsers render a text field
		{`<textarea name="e"></textarea>`, input},
		{`<input type="button" name="e">`, click},
		{`<input type="submit" name="e">`, click},
		{`<input type="reset" name="e">`, click},
		{`<input type="image" name="e" src="b.png">`, click},
		{`<input type="checkbox" name="e">`, click},
		{`<input type="Radio" name="e">`, click},
		{`<input type="hidden" name="e">`, container},
		{`<input type="file" name="e">`, container},
		{`<input type="date" name="e">`, container},
		{`<input type="datetime-local" name="e">`, container},
		{`<input type="month" name="e">`, container},
		{`<input type="week" name="e">`, container},
		{`<input type="time" name="e">`, container},
		{`<input type="range" name="e">`, container},
		{`<input type="color" name="e">`, container},
		{`<input type="hidden" name="e" onclick="f()">`, click},
		// Containers.
		{`<div name="e">text only</div>`, container},
		{`<div name="e"><a name="e.x">x</a></div>`, container},
		{`<span name="e">x</span>`, container},
		{`<section name="e"></section>`, container},
		{`<ul><li name="e">x</li></ul>`, container},
		{`<ul name="e"><li>x</li></ul>`, container},
		{`<form name="e"></form>`, container},
		{`<table name="e"><tr><td>x</td></tr></table>`, container},
		{`<img name="e" src="x.png" alt="x">`, container},
		{`<nav name="e"></nav>`, container},
		{`<p name="e">x</p>`, container},
		{`<div name="e" role="presentation">x</div>`, container},
		{`<div name="e" role="textbox">x</div>`, container},
		{`<div name="e" role="">x</div>`, container},
		// Roles and onclick make anything clickable.
		{`<div name="e" role="button">x</div>`, click},
		{`<span name="e" role="link">x</span>`, click},
		{`<div name="e" role="checkbox"></div>`, click},
		{`<div name="e" role="radio"></div>`, click},
		{`<div name="e" role="switch"></div>`, click},
		{`<div name="e" role="tab"></div>`, click},
		{`<li name="e" role="menuitem">x</li>`, click},
		{`<li name="e" role="option">x</li>`, click},
		{`<div name="e" role="combobox"></div>`, click},
		{`<div name="e" role="BUTTON"></div>`, click},
		{`<div name="e" role="presentation link"></div>`, click},
		{`<img name="e" src="x.png" onclick="zoom()">`, click},
		{`<div name="e" onclick="">x</div>`, click},
		{`<tr name="e" onclick="open()"><td>x</td></tr>`, container}, // a tr outside a table is dropped by the parser: no element
	}
	for _, tt := range tests {
		t.Run(tt.html, func(t *testing.T) {
			t.Parallel()
			p, err := nextaction.ParsePage(tt.html)
			if err != nil {
				t.Fatal(err)
			}
			var got nextaction.Kind
			for _, e := range p.Elements {
				if e.Name == "e" {
					got = e.Kind
				}
			}
			if strings.HasPrefix(tt.html, "<tr") {
				if got != 0 {
					t.Fatalf("kind %v, want no element", got)
				}
				return
			}
			if got != tt.want {
				t.Errorf("kind %v, want %v", got, tt.want)
			}
			isTarget := tt.want != container
			if slices.Contains(p.Clickables(), "e") != (tt.want == click) || slices.Contains(p.Inputs(), "e") != (tt.want == input) ||
				slices.Contains(p.Containers(), "e") == isTarget {
				t.Errorf("accessors disagree with kind %v: clickables %q, inputs %q, containers %q", tt.want, p.Clickables(), p.Inputs(), p.Containers())
			}
		})
	}
}

// TestContainersNeverTargets: named containers at every depth are in no
// action's target set: the action grammar never offers them and Validate
// refuses them; a page of containers only allows terminate.
func TestContainersNeverTargets(t *testing.T) {
	t.Parallel()
	page := `<div name="store"><section name="store.results"><ul name="store.results.list">
		<li name="store.results.list.item1"><div name="store.results.list.item1.card" class="c">
		<a name="store.results.list.item1.card.view_product">View</a>
		<span name="store.results.list.item1.card.price">$29</span>
		<div name="store.results.list.item1.card.buttons"><button name="store.results.list.item1.card.buttons.add_to_cart">Add</button></div>
		</div></li></ul></section>
		<form name="store.search"><input name="store.search.search_input"><input type="hidden" name="store.search.token"></form></div>`
	p, err := nextaction.ParsePage(page)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Clickables(), []string{"store.results.list.item1.card.view_product", "store.results.list.item1.card.buttons.add_to_cart"}; !slices.Equal(got, want) {
		t.Errorf("clickables %q, want %q", got, want)
	}
	if got, want := p.Inputs(), []string{"store.search.search_input"}; !slices.Equal(got, want) {
		t.Errorf("inputs %q, want %q", got, want)
	}
	containers := p.Containers()
	if len(containers) != 9 {
		t.Errorf("containers %q, want 9", containers)
	}
	for _, c := range containers {
		for _, a := range []nextaction.Action{{Type: "click", Name: c}, {Type: "type_and_submit", Name: c, Text: "x"}} {
			if err := a.Validate(p, 100); err == nil {
				t.Errorf("%s on container %q validated", a.Type, c)
			}
		}
	}
	g, err := nextaction.ActionGrammar(p, nextaction.FormatFinetuned, nextaction.Limits{MaxTextBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range containers {
		if g.Match([]byte(`{"type":"click","name":"` + c + `"}`)) {
			t.Errorf("grammar allows a click on container %q", c)
		}
	}
	if !g.Match([]byte(`{"type":"click","name":"store.results.list.item1.card.view_product"}`)) {
		t.Error("grammar refuses a click on a link")
	}

	only, err := nextaction.ParsePage(`<div name="cart2"><span name="cart2.total">$5</span><img name="cart2.logo" src="l.png"></div>`)
	if err != nil {
		t.Fatal(err)
	}
	g, err = nextaction.ActionGrammar(only, nextaction.FormatFinetuned, nextaction.Limits{MaxTextBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !g.Match([]byte(`{"type":"terminate"}`)) || g.Match([]byte(`{"type":"click","name":"cart2"}`)) {
		t.Error("a page of containers only must allow terminate alone")
	}
}

// TestRandomPageContainers: generated pages name containers at every
// depth, and none of them is a target.
func TestRandomPageContainers(t *testing.T) {
	t.Parallel()
	var total, deep int
	for seed := range uint64(500) {
		html, cs, ins, conts := nextactiontest.RandomPage(rand.New(rand.NewPCG(seed, 3)), nextactiontest.PageOptions{MaxClickables: 12, MaxInputs: 3, ApproxBytes: -1})
		p, err := nextaction.ParsePage(html)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Containers(); !slices.Equal(got, conts) {
			t.Fatalf("seed %d: containers\n got %q\nwant %q\n%s", seed, got, conts, html)
		}
		for _, c := range conts {
			if slices.Contains(cs, c) || slices.Contains(ins, c) {
				t.Fatalf("seed %d: container %q is a target", seed, c)
			}
			if strings.Count(c, ".") >= 2 {
				deep++
			}
		}
		total += len(conts)
	}
	if total == 0 || deep == 0 {
		t.Errorf("containers %d, deep ones %d: want both > 0", total, deep)
	}
}
