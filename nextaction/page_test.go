package nextaction_test

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nextact/nextact/nextaction"
)

const (
	click = nextaction.Clickable
	input = nextaction.Input
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
				{Name: "columbia_shirt", Kind: click, Tag: "div", Label: "View product"},
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
				{Name: "c4", Kind: click, Tag: "input"},
				{Name: "c5", Kind: click, Tag: "select", Label: "One"},
				{Name: "c5.o1", Kind: click, Tag: "option", Label: "One"},
			},
		},
		{
			name: "labels",
			html: `<a name="a1"><img src="x.png" alt="ignored"> <span>Deal</span> &amp; <b>more</b></a>
				<button name="a2" aria-label="  Close   dialog "></button>
				<li name="a3"><script>var x = 1;</script><style>p{}</style>Visible</li>
				<a name="a4">` + strings.Repeat("x", 100) + `</a>
				<a name="a5">` + strings.Repeat("é", 50) + `</a>
				<span name="a6" title="T">  </span>`,
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
		{"other order, tags, labels, content", `<p>hello</p><button name="y">why</button><div name="x"></div><textarea name="q">t</textarea>`, true},
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
	opts := []nextaction.PageOptions{
		{},
		{MaxClickables: 200, MaxInputs: 10, ApproxBytes: 60000},
		{MaxClickables: 3, MaxInputs: -1, ApproxBytes: -1},
		{MaxClickables: -1, MaxInputs: -1},
	}
	for seed := range uint64(1000) {
		o := opts[seed%uint64(len(opts))]
		html, clickables, inputs := nextaction.RandomPage(rand.New(rand.NewPCG(seed, 7)), o)
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
		if o.ApproxBytes == 0 && len(html) < nextaction.DefaultApproxBytes {
			t.Fatalf("seed %d: %d bytes, want at least %d", seed, len(html), nextaction.DefaultApproxBytes)
		}
	}
}

func TestRandomPageDeterministic(t *testing.T) {
	t.Parallel()
	a, _, _ := nextaction.RandomPage(rand.New(rand.NewPCG(1, 2)), nextaction.PageOptions{})
	b, _, _ := nextaction.RandomPage(rand.New(rand.NewPCG(1, 2)), nextaction.PageOptions{})
	c, _, _ := nextaction.RandomPage(rand.New(rand.NewPCG(1, 3)), nextaction.PageOptions{})
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
		_, cs, is := nextaction.RandomPage(rand.New(rand.NewPCG(seed, 0)), nextaction.PageOptions{MaxClickables: 12, MaxInputs: 2})
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
		html, _, _ := nextaction.RandomPage(rand.New(rand.NewPCG(1, 1)), nextaction.PageOptions{MaxClickables: 200, MaxInputs: 5, ApproxBytes: size})
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
