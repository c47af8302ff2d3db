package bench

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/nextact/nextact/nextaction"
)

// BytesPerToken converts Config.PageTokens to a page size in bytes: about
// what Llama 3's and Qwen 2.5's tokenizers give on English simplified HTML.
// A target's own tokenizer decides the real count, which the report gives.
const BytesPerToken = 4

// PageKind is the kind of a store page.
type PageKind int

// The page kinds, in the order a purchase visits them.
const (
	PageResults PageKind = iota
	PageProduct
	PageCart
	PageCheckout
	PageConfirmation
)

func (k PageKind) String() string {
	switch k {
	case PageResults:
		return "results"
	case PageProduct:
		return "product"
	case PageCart:
		return "cart"
	case PageCheckout:
		return "checkout"
	case PageConfirmation:
		return "confirmation"
	}
	return "PageKind(" + strconv.Itoa(int(k)) + ")"
}

// Product is one item of the synthetic store.
type Product struct {
	// Slug names the product in element names (columbia_shirt): brand and
	// category slugs joined by "_".
	Slug     string
	Brand    string
	Category category
	Title    string
	// Cents is the price in cents.
	Cents int
	// Stars is the average rating in tenths of a star (10..50).
	Stars    int
	Ratings  int
	Colors   []string
	Features []string
}

type category struct {
	Slug, Name string
	Sizes      []string
	BaseCents  int
}

var (
	brands = []string{"Columbia", "The North Face", "Patagonia", "Levi's", "Nike", "Adidas", "Carhartt", "Uniqlo", "Hanes", "Osprey", "Hydro Flask", "Sony"}

	apparelSizes = []string{"xs", "s", "m", "l", "xl"}
	shoeSizes    = []string{"7", "8", "9", "10", "11", "12"}
	waistSizes   = []string{"30w_30l", "32w_30l", "32w_32l", "34w_32l", "36w_32l"}
	categories   = []category{
		{"shirt", "Long Sleeve Shirt", apparelSizes, 3500},
		{"jacket", "Insulated Jacket", apparelSizes, 12000},
		{"rain_jacket", "Rain Jacket", apparelSizes, 8000},
		{"fleece", "Full-Zip Fleece", apparelSizes, 6000},
		{"hoodie", "Pullover Hoodie", apparelSizes, 4500},
		{"jeans", "Straight Fit Jeans", waistSizes, 5500},
		{"sneakers", "Running Shoes", shoeSizes, 9000},
		{"socks", "Hiking Socks (3 Pairs)", []string{"m", "l"}, 1800},
		{"backpack", "Daypack 24L", nil, 9500},
		{"water_bottle", "Insulated Water Bottle 32 oz", nil, 3500},
		{"tent", "2-Person Backpacking Tent", nil, 22000},
		{"headphones", "Wireless Noise Cancelling Headphones", nil, 18000},
	}
	lines    = []string{"Silver Ridge", "Trail", "Summit", "Everyday", "Classic", "Ultralight", "Heritage", "Pro", "Essential", "Venture", "Explorer"}
	colors   = []string{"black", "navy", "blue", "gray", "green", "red", "white", "khaki"}
	features = []string{
		"Moisture-wicking fabric keeps you dry", "Machine washable", "Relaxed fit through the chest and waist",
		"Water-resistant finish sheds light rain", "Recycled materials", "UPF 50 sun protection",
		"Adjustable straps and padded back panel", "Lifetime warranty", "Lightweight and packable",
		"Reinforced seams for durability", "Breathable mesh lining", "Imported",
	}
)

// Store is a seeded synthetic shop: its catalog, and how its pages look
// and link. It is immutable and safe for concurrent use.
type Store struct {
	seed      uint64
	pageBytes int
	perPage   int // search results per results page
	Products  []Product
	bySlug    map[string]int
}

// NewStore generates the store of seed whose pages are about pageBytes
// long: 48 products (each of 12 brands in 4 of 12 categories), and 2 to 16
// search results per page, by page size.
func NewStore(seed uint64, pageBytes int) *Store {
	rng := rand.New(rand.NewPCG(seed, 0x5707e))
	s := &Store{seed: seed, pageBytes: pageBytes, perPage: min(max(pageBytes/500, 2), 16), bySlug: make(map[string]int)}
	for _, brand := range brands {
		cats := rng.Perm(len(categories))[:4]
		slices.Sort(cats)
		for _, ci := range cats {
			c := categories[ci]
			p := Product{
				Slug:     slugify(brand) + "_" + c.Slug,
				Brand:    brand,
				Category: c,
				Title:    fmt.Sprintf("%s %s %s %s", brand, []string{"Men's", "Women's", "Unisex"}[rng.IntN(3)], pick(rng, lines), c.Name),
				Cents:    c.BaseCents*(70+rng.IntN(80))/100 - 1 - rng.IntN(2)*50,
				Stars:    32 + rng.IntN(18),
				Ratings:  12 + rng.IntN(25000),
			}
			for _, k := range rng.Perm(len(colors))[:2+rng.IntN(3)] {
				p.Colors = append(p.Colors, colors[k])
			}
			for _, k := range rng.Perm(len(features))[:3+rng.IntN(3)] {
				p.Features = append(p.Features, features[k])
			}
			s.bySlug[p.Slug] = len(s.Products)
			s.Products = append(s.Products, p)
		}
	}
	return s
}

// slugify lowercases s and keeps [a-z0-9], with "_" between words.
func slugify(s string) string {
	var b strings.Builder
	for _, w := range strings.Fields(strings.ToLower(s)) {
		w = strings.Map(func(r rune) rune {
			if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
				return r
			}
			return -1
		}, w)
		if w == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('_')
		}
		b.WriteString(w)
	}
	return b.String()
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// State is where a shopper is: the page, the search that led there, and
// the cart. The search fields are kept on every page, so "back to
// results" returns to the same results.
type State struct {
	Kind    PageKind
	Query   string
	Filters []string // refinement keys such as customer_reviews.4_stars_up, sorted
	Sort    string   // a sort_by key; empty is featured
	PageNum int      // results page, from 1
	Product int      // PageProduct: index into Store.Products
	Cart    []int    // product indices in the order added, each once
	// Purchased is set by a click on a buy-now element (the paper's
	// purchase), Ordered by placing the order at checkout.
	Purchased bool
	Ordered   bool
}

// key identifies the state's page, for seeding its filler text.
func (st State) key() string {
	return fmt.Sprintf("%d|%s|%v|%s|%d|%d|%v|%v", st.Kind, st.Query, st.Filters, st.Sort, st.PageNum, st.Product, st.Cart, st.Ordered)
}

// Shopper returns session i's persona and the page it starts on: the
// results of a search for something the persona wants. Both depend only
// on the store's seed and i.
func (s *Store) Shopper(i int) (persona string, start State) {
	rng := rand.New(rand.NewPCG(s.seed, uint64(i)+1<<32))
	p := s.Products[rng.IntN(len(s.Products))]
	item := strings.ToLower(p.Category.Name)
	budget := (p.Cents/100/10 + 1 + rng.IntN(3)) * 10
	persona = fmt.Sprintf(pick(rng, personas), item, budget, p.Brand)
	query := item
	if rng.IntN(3) == 0 {
		query = strings.ToLower(p.Brand) + " " + item
	}
	return persona, State{Kind: PageResults, Query: query, PageNum: 1}
}

var personas = []string{
	"A budget-conscious college student who needs a %s and will not spend more than $%d. Ignores %s unless it is on sale.",
	"A busy parent buying a %s for a family trip; trusts ratings over brands, budget about $%d, has had good luck with %s.",
	"An outdoor enthusiast comparing every %s in detail before buying; spends up to $%d and is loyal to %s.",
	"A first-time online shopper looking for a %s as a gift, around $%d; has heard of %s.",
	"A returning customer who browses many %s listings, often adds to cart and leaves; budget $%d; likes %s.",
}

// Navigate returns the state that action a leads to from st. Clicks on
// names the store does not know, and terminate, leave it unchanged.
func (s *Store) Navigate(st State, a nextaction.Action) State {
	st.Filters = slices.Clone(st.Filters)
	st.Cart = slices.Clone(st.Cart)
	switch a.Type {
	case nextaction.TypeTypeAndSubmit:
		if a.Name == "search_input" {
			return results(st, a.Text)
		}
		return st
	case nextaction.TypeClick:
		return s.click(st, a.Name)
	}
	return st
}

// results is the first results page of query q.
func results(st State, q string) State {
	st.Kind, st.Query, st.Filters, st.Sort, st.PageNum = PageResults, strings.TrimSpace(q), nil, "", 1
	return st
}

func (s *Store) click(st State, name string) State {
	switch name {
	case "nav.home":
		return results(st, "")
	case "search_button":
		return results(st, st.Query)
	case "nav.cart", "checkout.back_to_cart":
		st.Kind = PageCart
	case "nav.back_to_results", "cart.continue_shopping", "confirmation.continue_shopping":
		st.Kind = PageResults
	case "product.add_to_cart":
		st.Cart = addOnce(st.Cart, st.Product)
		st.Kind = PageCart
	case "product.buy_now":
		st.Cart = addOnce(st.Cart, st.Product)
		st.Kind, st.Purchased = PageCheckout, true
	case "cart.buy_now":
		st.Kind, st.Purchased = PageCheckout, true
	case "checkout.place_order":
		st.Kind, st.Ordered, st.Cart = PageConfirmation, true, nil
	case "pagination.next_page":
		st.PageNum = min(st.PageNum+1, s.lastPage(st))
	case "pagination.previous_page":
		st.PageNum = max(st.PageNum-1, 1)
	default:
		return s.clickPattern(st, name)
	}
	return st
}

// clickPattern handles the element families: refinements, sorting, page
// numbers and per-product elements.
func (s *Store) clickPattern(st State, name string) State {
	if rest, ok := strings.CutPrefix(name, "refinements."); ok {
		if i := slices.Index(st.Filters, rest); i >= 0 {
			st.Filters = slices.Delete(st.Filters, i, i+1)
		} else {
			st.Filters = append(st.Filters, rest)
			slices.Sort(st.Filters)
		}
		st.Kind, st.PageNum = PageResults, 1
		return st
	}
	if rest, ok := strings.CutPrefix(name, "sort_by."); ok {
		st.Kind, st.Sort, st.PageNum = PageResults, rest, 1
		return st
	}
	if rest, ok := strings.CutPrefix(name, "pagination.page_"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 1 && n <= s.lastPage(st) {
			st.PageNum = n
		}
		return st
	}
	segs := strings.Split(name, ".")
	if len(segs) < 2 {
		return st
	}
	p, ok := s.bySlug[segs[len(segs)-2]]
	if !ok {
		return st
	}
	switch segs[len(segs)-1] {
	case "view_product", "customer_reviews":
		st.Kind, st.Product = PageProduct, p
	case "add_to_cart":
		st.Cart = addOnce(st.Cart, p)
		st.Kind = PageCart
	case "delete":
		st.Cart = slices.DeleteFunc(st.Cart, func(x int) bool { return x == p })
	}
	return st
}

func addOnce(cart []int, p int) []int {
	if slices.Contains(cart, p) {
		return cart
	}
	return append(cart, p)
}

// The page families a fallback action picks from.
const (
	famView      = "view_product"
	famCart      = "add_to_cart"
	famBuy       = "buy_now"
	famRefine    = "refine"
	famPage      = "paginate"
	famBack      = "back"
	famOrder     = "place_order"
	famDelete    = "delete"
	famOther     = "other"
	famSearch    = "search"
	famTerminate = "terminate"
)

type weighted struct {
	family string
	weight int
}

// fallbackWeights say what a shopper without an answer does on each kind
// of page.
var fallbackWeights = map[PageKind][]weighted{
	PageResults:      {{famView, 55}, {famCart, 8}, {famRefine, 12}, {famPage, 6}, {famSearch, 10}, {famOther, 3}, {famTerminate, 6}},
	PageProduct:      {{famCart, 30}, {famBuy, 12}, {famView, 15}, {famBack, 15}, {famSearch, 8}, {famOther, 10}, {famTerminate, 10}},
	PageCart:         {{famBuy, 45}, {famBack, 20}, {famView, 10}, {famDelete, 5}, {famOther, 5}, {famTerminate, 15}},
	PageCheckout:     {{famOrder, 70}, {famBack, 10}, {famOther, 5}, {famTerminate, 15}},
	PageConfirmation: {{famTerminate, 70}, {famBack, 20}, {famView, 10}},
}

// family classifies an element name for Fallback.
func family(name string) string {
	switch {
	case name == "search_input":
		return famSearch
	case strings.HasSuffix(name, ".view_product"):
		return famView
	case strings.HasSuffix(name, ".add_to_cart"):
		return famCart
	case strings.HasSuffix(name, ".buy_now"):
		return famBuy
	case strings.HasPrefix(name, "refinements."), strings.HasPrefix(name, "sort_by."):
		return famRefine
	case strings.HasPrefix(name, "pagination."):
		return famPage
	case strings.HasSuffix(name, "back_to_results"), strings.HasSuffix(name, "continue_shopping"), name == "checkout.back_to_cart":
		return famBack
	case name == "checkout.place_order":
		return famOrder
	case strings.HasSuffix(name, ".delete"):
		return famDelete
	}
	return famOther
}

// Fallback returns the action a shopper takes on page p when the target's
// answer could not be used: a weighted random family of elements present
// on the page (per page kind), then a random element of it; a search types
// a query drawn from the catalog. It depends only on p and rng's state.
func (s *Store) Fallback(p Page, rng *rand.Rand) nextaction.Action {
	return s.fallback(p, rng, true)
}

// FallbackContinuing is Fallback without terminate: what a shopper does
// whose session must go on. On a page with no element it still
// terminates.
func (s *Store) FallbackContinuing(p Page, rng *rand.Rand) nextaction.Action {
	return s.fallback(p, rng, false)
}

func (s *Store) fallback(p Page, rng *rand.Rand, terminate bool) nextaction.Action {
	fams := make(map[string][]string)
	for _, n := range p.Clickables {
		f := family(n)
		fams[f] = append(fams[f], n)
	}
	if slices.Contains(p.Inputs, "search_input") {
		fams[famSearch] = []string{"search_input"}
	}
	var choices []weighted
	total := 0
	for _, w := range fallbackWeights[p.Kind] {
		if (w.family == famTerminate && terminate) || len(fams[w.family]) > 0 {
			choices = append(choices, w)
			total += w.weight
		}
	}
	if total == 0 {
		return nextaction.Action{Type: nextaction.TypeTerminate}
	}
	r := rng.IntN(total)
	for _, w := range choices {
		if r -= w.weight; r >= 0 {
			continue
		}
		switch w.family {
		case famTerminate:
			return nextaction.Action{Type: nextaction.TypeTerminate}
		case famSearch:
			q := s.Products[rng.IntN(len(s.Products))]
			return nextaction.Action{Type: nextaction.TypeTypeAndSubmit, Name: "search_input", Text: strings.ToLower(q.Category.Name)}
		}
		return nextaction.Action{Type: nextaction.TypeClick, Name: pick(rng, fams[w.family])}
	}
	return nextaction.Action{Type: nextaction.TypeTerminate}
}

// pageRand is the generator of a page's filler text: a function of the
// store's seed and the state only.
func (s *Store) pageRand(st State) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(st.key()))
	return rand.New(rand.NewPCG(s.seed, h.Sum64()))
}
