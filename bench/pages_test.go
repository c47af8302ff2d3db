package bench_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/nextact/nextact/bench"
	"github.com/nextact/nextact/nextaction"
)

func click(name string) nextaction.Action {
	return nextaction.Action{Type: nextaction.TypeClick, Name: name}
}

// everyKind returns one state of each page kind.
func everyKind(s *bench.Store) []bench.State {
	_, start := s.Shopper(0)
	return []bench.State{
		start,
		{Kind: bench.PageResults, Query: "", PageNum: 2, Filters: []string{"customer_reviews.4_stars_up"}},
		{Kind: bench.PageProduct, Product: 5, Query: "jacket", PageNum: 1},
		{Kind: bench.PageCart, Cart: []int{1, 7}},
		{Kind: bench.PageCart},
		{Kind: bench.PageCheckout, Cart: []int{3}},
		{Kind: bench.PageConfirmation},
	}
}

func TestPagesDeterministic(t *testing.T) {
	t.Parallel()
	a, b, other := bench.NewStore(7, 4000), bench.NewStore(7, 4000), bench.NewStore(8, 4000)
	for _, st := range everyKind(a) {
		pa, pb, po := a.Render(st), b.Render(st), other.Render(st)
		if pa.HTML != pb.HTML || !slices.Equal(pa.Clickables, pb.Clickables) {
			t.Errorf("%s page differs between two stores of the same seed", st.Kind)
		}
		if pa.HTML == po.HTML {
			t.Errorf("%s page is the same for seeds 7 and 8", st.Kind)
		}
	}
	for i := range 20 {
		p1, s1 := a.Shopper(i)
		p2, s2 := b.Shopper(i)
		if p1 != p2 || s1.Query != s2.Query {
			t.Errorf("shopper %d differs between two stores of the same seed", i)
		}
	}
}

// Render's element lists are what nextaction.ParsePage finds: the same
// names, in document order, of the same kinds; every name is hierarchical
// or one of the few top-level ones, and safe.
func TestPagesParseAsRendered(t *testing.T) {
	t.Parallel()
	for _, size := range []int{800, 4000, 40000} {
		s := bench.NewStore(3, size)
		for _, st := range everyKind(s) {
			p := s.Render(st)
			parsed, err := nextaction.ParsePage(p.HTML)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(parsed.Clickables(), p.Clickables) || !slices.Equal(parsed.Inputs(), p.Inputs) ||
				!slices.Equal(parsed.Containers(), p.Containers) {
				t.Fatalf("size %d %s page: parsed clickables %v inputs %v containers %v, rendered %v %v %v",
					size, st.Kind, parsed.Clickables(), parsed.Inputs(), parsed.Containers(), p.Clickables, p.Inputs, p.Containers)
			}
			if len(p.Containers) == 0 {
				t.Errorf("size %d %s page names no container", size, st.Kind)
			}
			if parsed.Dropped != 0 || parsed.Duplicates != 0 {
				t.Errorf("size %d %s page: %d names dropped, %d duplicated", size, st.Kind, parsed.Dropped, parsed.Duplicates)
			}
			if len(p.Clickables) == 0 || !slices.Contains(p.Inputs, "search_input") && st.Kind != bench.PageCheckout {
				t.Errorf("size %d %s page: no clickables or no search input", size, st.Kind)
			}
			for _, n := range append(slices.Clone(p.Clickables), p.Inputs...) {
				if !strings.Contains(n, ".") && !slices.Contains([]string{"search_input", "search_button"}, n) {
					t.Errorf("%s page: name %q is not hierarchical", st.Kind, n)
				}
			}
			if strings.Contains(p.HTML, "http://") || strings.Contains(p.HTML, "https://") {
				t.Errorf("%s page has an absolute URL", st.Kind)
			}
		}
	}
}

// The fallback actions of every page, many times over, name a clickable or
// an input that ParsePage finds, never a named container.
func TestFallbackNeverPicksContainer(t *testing.T) {
	t.Parallel()
	for _, size := range []int{800, 4000, 40000} {
		s := bench.NewStore(5, size)
		for _, st := range everyKind(s) {
			p := s.Render(st)
			parsed, err := nextaction.ParsePage(p.HTML)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(size), 9))
			for i := range 200 {
				a := s.Fallback(p, rng)
				if i%2 == 1 {
					a = s.FallbackContinuing(p, rng)
				}
				if slices.Contains(parsed.Containers(), a.Name) {
					t.Fatalf("size %d %s page: fallback %+v names a container", size, st.Kind, a)
				}
				if err := a.Validate(parsed, 100); err != nil {
					t.Fatalf("size %d %s page: fallback %+v: %v", size, st.Kind, a, err)
				}
			}
		}
	}
}

func TestPageSize(t *testing.T) {
	t.Parallel()
	for _, size := range []int{4000, 16000, 60000} {
		s := bench.NewStore(1, size)
		for _, st := range everyKind(s) {
			n := len(s.Render(st).HTML)
			if n < size*85/100 || n > size*115/100 {
				t.Errorf("size %d: %s page is %d bytes", size, st.Kind, n)
			}
		}
	}
	// The smallest layouts stay small.
	s := bench.NewStore(1, 400)
	for _, st := range everyKind(s) {
		if n := len(s.Render(st).HTML); n > 1300 {
			t.Errorf("size 400: %s page is %d bytes", st.Kind, n)
		}
	}
}

func TestNavigate(t *testing.T) {
	t.Parallel()
	s := bench.NewStore(1, 4000)
	_, start := s.Shopper(0)
	results := s.Render(start)
	var firstProduct string
	for _, n := range results.Clickables {
		if strings.HasSuffix(n, ".view_product") {
			firstProduct = n
			break
		}
	}
	slug := strings.TrimSuffix(firstProduct, ".view_product")
	idx := slices.IndexFunc(s.Products, func(p bench.Product) bool { return p.Slug == slug })
	if firstProduct == "" || idx < 0 {
		t.Fatalf("no product link on the first results page: %v", results.Clickables)
	}
	onProduct := s.Navigate(start, click(firstProduct))
	if onProduct.Kind != bench.PageProduct || onProduct.Product != idx {
		t.Fatalf("click %s: %+v, want the product page of %d", firstProduct, onProduct, idx)
	}
	if p := s.Render(onProduct); !strings.Contains(p.HTML, "<h1>"+strings.ReplaceAll(s.Products[idx].Title, "'", "&#39;")) {
		t.Errorf("product page does not show the product's title %q", s.Products[idx].Title)
	}

	tests := []struct {
		name  string
		from  bench.State
		a     nextaction.Action
		check func(st bench.State) bool
	}{
		{"search", onProduct, nextaction.Action{Type: "type_and_submit", Name: "search_input", Text: "rain jacket"},
			func(st bench.State) bool {
				return st.Kind == bench.PageResults && st.Query == "rain jacket" && st.PageNum == 1
			}},
		{"add to cart from results", start, click(slug + ".add_to_cart"),
			func(st bench.State) bool { return st.Kind == bench.PageCart && slices.Equal(st.Cart, []int{idx}) }},
		{"add to cart on the product page", onProduct, click("product.add_to_cart"),
			func(st bench.State) bool { return st.Kind == bench.PageCart && slices.Equal(st.Cart, []int{idx}) }},
		{"buy now on the product page", onProduct, click("product.buy_now"),
			func(st bench.State) bool {
				return st.Kind == bench.PageCheckout && st.Purchased && slices.Contains(st.Cart, idx)
			}},
		{"buy now in the cart", bench.State{Kind: bench.PageCart, Cart: []int{2}}, click("cart.buy_now"),
			func(st bench.State) bool { return st.Kind == bench.PageCheckout && st.Purchased }},
		{"place order", bench.State{Kind: bench.PageCheckout, Cart: []int{2}, Purchased: true}, click("checkout.place_order"),
			func(st bench.State) bool { return st.Kind == bench.PageConfirmation && st.Ordered && len(st.Cart) == 0 }},
		{"refinement toggles on", start, click("refinements.customer_reviews.4_stars_up"),
			func(st bench.State) bool {
				return st.Kind == bench.PageResults && slices.Equal(st.Filters, []string{"customer_reviews.4_stars_up"})
			}},
		{"refinement toggles off", bench.State{Kind: bench.PageResults, PageNum: 1, Filters: []string{"customer_reviews.4_stars_up"}},
			click("refinements.customer_reviews.4_stars_up"), func(st bench.State) bool { return len(st.Filters) == 0 }},
		{"next page", bench.State{Kind: bench.PageResults, PageNum: 1}, click("pagination.next_page"),
			func(st bench.State) bool { return st.PageNum == 2 }},
		{"cart link", start, click("nav.cart"), func(st bench.State) bool { return st.Kind == bench.PageCart }},
		{"back to results keeps the search", onProduct, click("nav.back_to_results"),
			func(st bench.State) bool { return st.Kind == bench.PageResults && st.Query == start.Query }},
		{"delete from cart", bench.State{Kind: bench.PageCart, Cart: []int{idx, 3}}, click("cart." + slug + ".delete"),
			func(st bench.State) bool { return st.Kind == bench.PageCart && slices.Equal(st.Cart, []int{3}) }},
		{"terminate changes nothing", onProduct, nextaction.Action{Type: "terminate"},
			func(st bench.State) bool { return st.Kind == bench.PageProduct && st.Product == idx }},
		{"unknown name changes nothing", onProduct, click("product.color.mauve"),
			func(st bench.State) bool { return st.Kind == bench.PageProduct && st.Product == idx }},
	}
	for _, tc := range tests {
		if got := s.Navigate(tc.from, tc.a); !tc.check(got) {
			t.Errorf("%s: got %+v", tc.name, got)
		}
	}
}

// Navigate does not share slices with the state it is given.
func TestNavigateCopies(t *testing.T) {
	t.Parallel()
	s := bench.NewStore(1, 4000)
	from := bench.State{Kind: bench.PageProduct, Product: 4, Cart: make([]int, 1, 8)}
	_ = s.Navigate(from, click("product.add_to_cart"))
	if got := from.Cart[:2]; got[1] != 0 {
		t.Errorf("Navigate wrote into the caller's cart: %v", got)
	}
}

// Fallback actions are valid on their page and deterministic; a walk of
// fallback actions reaches every kind of page.
func TestFallbackWalk(t *testing.T) {
	t.Parallel()
	s := bench.NewStore(5, 2000)
	walk := func(seed uint64) []string {
		var trace []string
		for i := range 40 {
			_, st := s.Shopper(i)
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for range 30 {
				p := s.Render(st)
				a := s.Fallback(p, rng)
				trace = append(trace, p.Kind.String()+" "+a.JSON())
				switch a.Type {
				case nextaction.TypeClick:
					if !slices.Contains(p.Clickables, a.Name) {
						t.Fatalf("fallback clicks %q, not a clickable of the %s page", a.Name, p.Kind)
					}
				case nextaction.TypeTypeAndSubmit:
					if !slices.Contains(p.Inputs, a.Name) || a.Text == "" {
						t.Fatalf("fallback types into %q on the %s page", a.Name, p.Kind)
					}
				}
				if a.Type == nextaction.TypeTerminate {
					break
				}
				st = s.Navigate(st, a)
			}
		}
		return trace
	}
	a, b := walk(1), walk(1)
	if !slices.Equal(a, b) {
		t.Fatal("two walks with the same seed differ")
	}
	seen := map[string]bool{}
	for _, line := range a {
		seen[strings.Fields(line)[0]] = true
	}
	for _, k := range []bench.PageKind{bench.PageResults, bench.PageProduct, bench.PageCart, bench.PageCheckout, bench.PageConfirmation} {
		if !seen[k.String()] {
			t.Errorf("the walk never reached a %s page", k)
		}
	}
}
