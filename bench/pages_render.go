package bench

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"html"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Page is one rendered store page: simplified HTML and the names of its
// clickable, input and container elements, in document order (what
// nextaction.ParsePage finds in it). As in the paper's pages, the
// containers that group controls are named too (a result item's <div
// name="columbia_shirt"> around columbia_shirt.view_product); they are
// never targets.
type Page struct {
	Kind       PageKind
	HTML       string
	Clickables []string
	Inputs     []string
	Containers []string
}

// Render returns the page of st at the store's page size: the most
// detailed layout that fits (optional sections such as price refinements,
// related products and feature lists go first), padded with unnamed review
// text to the size. It depends only on the store's seed and size, and st.
func (s *Store) Render(st State) Page {
	for detail := maxDetail; detail > 0; detail-- {
		if p := s.render(st, detail, false); len(p.HTML) <= s.pageBytes {
			return s.render(st, detail, true)
		}
	}
	return s.render(st, 0, true)
}

// maxDetail is the most detailed layout.
const maxDetail = 2

func (s *Store) render(st State, detail int, pad bool) Page {
	w := &pageWriter{seen: make(map[string]bool), detail: detail}
	w.b.Grow(s.pageBytes + 2048)
	rng := s.pageRand(st)
	if detail >= 1 {
		w.raw("<!DOCTYPE html>\n<html><head><title>")
		w.text(s.title(st))
		w.raw("</title></head>\n<body>\n")
	}
	s.header(w, st)
	w.raw("<main>\n")
	switch st.Kind {
	case PageResults:
		s.resultsPage(w, st, rng)
	case PageProduct:
		s.productPage(w, st, rng)
	case PageCart:
		s.cartPage(w, st)
	case PageCheckout:
		s.checkoutPage(w, st)
	default:
		s.confirmationPage(w, st)
	}
	if pad {
		s.fill(w, st, rng, s.pageBytes-90)
	}
	w.raw("</main>\n")
	if detail >= 1 {
		w.raw("<footer><p>Conditions of Use · Privacy Notice · Interest-Based Ads · © ShopSim, Inc.</p></footer>\n")
	}
	if detail >= 1 {
		w.raw("</body></html>\n")
	}
	return Page{Kind: st.Kind, HTML: w.b.String(), Clickables: w.clickables, Inputs: w.inputs, Containers: w.containers}
}

func (s *Store) title(st State) string {
	switch st.Kind {
	case PageResults:
		if st.Query == "" {
			return "ShopSim: Today's Deals"
		}
		return "ShopSim: " + st.Query
	case PageProduct:
		return s.Products[st.Product].Title + " at ShopSim"
	case PageCart:
		return "ShopSim Shopping Cart"
	case PageCheckout:
		return "ShopSim Checkout"
	}
	return "ShopSim: Thank You"
}

// pageWriter builds a page and records its named elements. A name is
// written once; later elements with the same name are left out.
type pageWriter struct {
	detail     int // 0..maxDetail: which optional sections are written
	b          strings.Builder
	seen       map[string]bool
	clickables []string
	inputs     []string
	containers []string
}

func (w *pageWriter) raw(s string)  { w.b.WriteString(s) }
func (w *pageWriter) text(s string) { w.b.WriteString(html.EscapeString(s)) }

// group opens <tag name="name" attrs>, a named container (unnamed when the
// name is taken); the caller closes it.
func (w *pageWriter) group(tag, name, attrs string) {
	if w.seen[name] {
		w.raw("<" + tag + attrs + ">")
		return
	}
	w.seen[name] = true
	w.containers = append(w.containers, name)
	w.raw("<" + tag + ` name="` + name + `"` + attrs + ">")
}

// named writes <tag name="name" attrs>label</tag> for a clickable.
func (w *pageWriter) named(tag, name, attrs, label string) {
	if w.seen[name] {
		return
	}
	w.seen[name] = true
	w.clickables = append(w.clickables, name)
	w.raw("<" + tag + ` name="` + name + `"` + attrs + ">")
	w.text(label)
	w.raw("</" + tag + ">")
}

// check writes a named checkbox or radio input (a clickable) and its label.
func (w *pageWriter) check(typ, name string, on bool, label string) {
	if w.seen[name] {
		return
	}
	w.seen[name] = true
	w.clickables = append(w.clickables, name)
	attr := ""
	if on {
		attr = " checked"
	}
	w.raw(`<input type="` + typ + `" name="` + name + `"` + attr + "><label>")
	w.text(label)
	w.raw("</label>")
}

// input writes a named text input holding value.
func (w *pageWriter) input(name, value string) {
	w.seen[name] = true
	w.inputs = append(w.inputs, name)
	w.raw(`<input name="` + name + `" value="`)
	w.text(value)
	w.raw(`">`)
}

func (s *Store) header(w *pageWriter, st State) {
	w.group("header", "nav", "")
	w.named("a", "nav.home", "", "ShopSim")
	w.raw(" ")
	w.input("search_input", st.Query)
	w.named("button", "search_button", "", "Go")
	if w.detail >= 1 {
		w.raw(" ")
		w.named("a", "nav.account", "", "Hello, sign in · Account & Lists")
	}
	w.raw(" ")
	w.named("a", "nav.cart", "", fmt.Sprintf("Cart (%d)", len(st.Cart)))
	w.raw("</header>\n")
}

func price(cents int) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }

func stars(tenths int) string { return fmt.Sprintf("%d.%d out of 5 stars", tenths/10, tenths%10) }

func (s *Store) resultsPage(w *pageWriter, st State, rng *rand.Rand) {
	all := s.search(st)
	first := (st.PageNum - 1) * s.perPage
	shown := all[min(first, len(all)):min(first+s.perPage, len(all))]
	w.raw(`<div class="results-info">`)
	switch {
	case len(shown) == 0:
		w.text(fmt.Sprintf("No results for %q with the selected filters.", st.Query))
	case st.Query == "":
		w.text(fmt.Sprintf("%d-%d of %d deals", first+1, first+len(shown), len(all)))
	default:
		w.text(fmt.Sprintf("%d-%d of %d results for %q", first+1, first+len(shown), len(all), st.Query))
	}
	w.raw("</div>\n")
	if w.detail >= 1 {
		s.sortBy(w)
	}
	s.refinements(w, st, all)
	w.raw("<div class=\"s-results\">\n")
	for _, i := range shown {
		s.resultItem(w, s.Products[i], rng)
	}
	w.raw("</div>\n")
	s.pagination(w, st)
}

func (s *Store) sortBy(w *pageWriter) {
	w.raw("<div>Sort by: <select>")
	for _, o := range []struct{ key, label string }{{"featured", "Featured"}, {"price_low_to_high", "Price: Low to High"}, {"price_high_to_low", "Price: High to Low"}, {"avg_customer_review", "Avg. Customer Review"}} {
		w.named("option", "sort_by."+o.key, "", o.label)
	}
	w.raw("</select></div>\n")
}

func (s *Store) resultItem(w *pageWriter, p Product, rng *rand.Rand) {
	w.group("div", p.Slug, "")
	w.named("a", p.Slug+".view_product", "", p.Title)
	w.raw(" <span>" + stars(p.Stars) + "</span>")
	if w.detail >= 1 {
		w.raw(" ")
		w.named("a", p.Slug+".customer_reviews", "", strconv.Itoa(p.Ratings))
	}
	w.raw(" <span>" + price(p.Cents) + "</span> ")
	if w.detail >= 2 {
		w.raw("<span>")
		w.text(pick(rng, deliveries))
		w.raw("</span> ")
	}
	w.named("button", p.Slug+".add_to_cart", "", "Add to cart")
	w.raw("</div>\n")
}

func (s *Store) pagination(w *pageWriter, st State) {
	w.group("nav", "pagination", ` class="pagination"`)
	if st.PageNum > 1 {
		w.named("a", "pagination.previous_page", "", "Previous")
	}
	for n := 1; n <= s.lastPage(st) && w.detail >= 1; n++ {
		if n == st.PageNum {
			w.raw("<span>" + strconv.Itoa(n) + "</span>")
			continue
		}
		w.named("a", "pagination.page_"+strconv.Itoa(n), "", strconv.Itoa(n))
	}
	if st.PageNum < s.lastPage(st) {
		w.named("a", "pagination.next_page", "", "Next")
	}
	w.raw("</nav>\n")
}

var deliveries = []string{"FREE delivery Tue, Jun 3", "FREE delivery Thu, Jun 5 on $35 of items", "Get it as soon as tomorrow", "Only 3 left in stock - order soon.", "FREE Returns"}

// priceBands are the price refinements: key, label, bounds in cents.
var priceBands = []struct {
	key, label string
	lo, hi     int
}{
	{"under_25", "Under $25", 0, 2500},
	{"25_to_50", "$25 to $50", 2500, 5000},
	{"50_to_100", "$50 to $100", 5000, 10000},
	{"100_and_above", "$100 & Above", 10000, 1 << 30},
}

func (s *Store) refinements(w *pageWriter, st State, all []int) {
	on := func(key string) bool { return slices.Contains(st.Filters, key) }
	w.group("aside", "refinements", "")
	w.raw("\n<h3>Customer Reviews</h3><ul>")
	for _, n := range []int{4, 3}[:1+min(w.detail, 1)] {
		key := fmt.Sprintf("customer_reviews.%d_stars_up", n)
		w.raw("<li>")
		w.named("a", "refinements."+key, "", fmt.Sprintf("%d Stars & Up", n))
		w.raw("</li>")
	}
	w.raw("</ul>\n")
	if w.detail == 0 {
		w.raw("</aside>\n")
		return
	}
	w.raw("<h3>Brand</h3><ul>")
	var bs []string
	for _, i := range all {
		if b := s.Products[i].Brand; !slices.Contains(bs, b) {
			bs = append(bs, b)
		}
	}
	for _, f := range st.Filters {
		if b, ok := strings.CutPrefix(f, "brand."); ok && !slices.ContainsFunc(bs, func(x string) bool { return slugify(x) == b }) {
			bs = append(bs, b)
		}
	}
	for _, b := range bs[:min(len(bs), 4*w.detail)] {
		key := "brand." + slugify(b)
		w.raw("<li>")
		w.check("checkbox", "refinements."+key, on(key), b)
		w.raw("</li>")
	}
	w.raw("</ul>\n")
	if w.detail < 2 {
		w.raw("</aside>\n")
		return
	}
	w.raw("<h3>Price</h3><ul>")
	for _, pb := range priceBands {
		w.raw("<li>")
		w.named("a", "refinements.price."+pb.key, "", pb.label)
		w.raw("</li>")
	}
	w.raw("</ul>\n<h3>Delivery</h3><ul><li>")
	w.check("checkbox", "refinements.delivery.free_shipping", on("delivery.free_shipping"), "FREE Shipping")
	w.raw("</li></ul>\n</aside>\n")
}

// search returns the products of st's results: those matching a word of
// the query (all products when none does), filtered and sorted as st says.
func (s *Store) search(st State) []int {
	words := strings.Fields(strings.ToLower(st.Query))
	score := make([]int, len(s.Products))
	matched := false
	for i, p := range s.Products {
		text := strings.ToLower(p.Title + " " + p.Category.Slug)
		for _, w := range words {
			if strings.Contains(text, w) {
				score[i]++
			}
		}
		matched = matched || score[i] > 0
	}
	var out []int
	for i, p := range s.Products {
		if (score[i] > 0 || !matched) && s.passes(p, st.Filters) {
			out = append(out, i)
		}
	}
	tie := func(i int) uint64 {
		h := fnv.New64a()
		h.Write([]byte(st.Query + "|" + s.Products[i].Slug))
		return h.Sum64()
	}
	slices.SortStableFunc(out, func(a, b int) int {
		pa, pb := s.Products[a], s.Products[b]
		switch st.Sort {
		case "price_low_to_high":
			return cmp.Compare(pa.Cents, pb.Cents)
		case "price_high_to_low":
			return cmp.Compare(pb.Cents, pa.Cents)
		case "avg_customer_review":
			return cmp.Compare(pb.Stars, pa.Stars)
		}
		return cmp.Or(cmp.Compare(score[b], score[a]), cmp.Compare(tie(a), tie(b)))
	})
	return out
}

// passes applies refinements: brands are OR'ed, the rest AND'ed.
func (s *Store) passes(p Product, filters []string) bool {
	brandOK, anyBrand := false, false
	for _, f := range filters {
		switch {
		case f == "customer_reviews.4_stars_up" && p.Stars < 40, f == "customer_reviews.3_stars_up" && p.Stars < 30:
			return false
		case f == "delivery.free_shipping" && p.Cents < 2500:
			return false
		case strings.HasPrefix(f, "brand."):
			anyBrand = true
			brandOK = brandOK || "brand."+slugify(p.Brand) == f
		case strings.HasPrefix(f, "price."):
			for _, pb := range priceBands {
				if f == "price."+pb.key && (p.Cents < pb.lo || p.Cents >= pb.hi) {
					return false
				}
			}
		}
	}
	return brandOK || !anyBrand
}

// lastPage is the number of results pages of st's search (at least 1).
func (s *Store) lastPage(st State) int {
	return max(1, (len(s.search(st))+s.perPage-1)/s.perPage)
}

func (s *Store) productPage(w *pageWriter, st State, rng *rand.Rand) {
	p := s.Products[st.Product]
	w.named("a", "nav.back_to_results", "", "‹ Back to results")
	w.raw("\n")
	w.group("div", "product", ` id="product"`)
	w.raw("<h1>")
	w.text(p.Title)
	w.raw("</h1>\n")
	if w.detail >= 1 {
		w.named("a", "product.brand_store", "", "Visit the "+p.Brand+" Store")
	}
	w.raw("\n<span>" + stars(p.Stars) + "</span> ")
	if w.detail >= 1 {
		w.named("a", "product.customer_reviews", "", strconv.Itoa(p.Ratings)+" ratings")
	}
	w.raw("\n<span class=\"price\">" + price(p.Cents) + "</span>\n<div>Color: <ul>")
	for _, c := range p.Colors {
		w.raw("<li>")
		w.named("button", "product.color."+c, "", c)
		w.raw("</li>")
	}
	w.raw("</ul></div>\n")
	if len(p.Category.Sizes) > 0 && w.detail >= 1 {
		w.raw("<div>Size: <select>")
		for _, z := range p.Category.Sizes {
			w.named("option", "product.size."+z, "", strings.ToUpper(strings.ReplaceAll(z, "_", " ")))
		}
		w.raw("</select></div>\n")
	}
	if w.detail >= 2 {
		w.raw("<ul class=\"features\">")
		for _, f := range p.Features {
			w.raw("<li>")
			w.text(f)
			w.raw("</li>")
		}
		w.raw("</ul>\n")
	}
	w.group("div", "product.buybox", ` id="buybox"`)
	w.raw("<span>In Stock</span> ")
	if w.detail >= 2 {
		w.raw("<select>")
		for q := 1; q <= 3; q++ {
			w.named("option", "product.quantity."+strconv.Itoa(q), "", "Qty: "+strconv.Itoa(q))
		}
		w.raw("</select>\n")
	}
	w.named("button", "product.add_to_cart", "", "Add to Cart")
	w.named("button", "product.buy_now", "", "Buy Now")
	if w.detail >= 1 {
		w.named("button", "product.add_to_list", "", "Add to List")
	}
	w.raw("</div></div>\n")
	if w.detail == 0 {
		return
	}
	w.raw("<h2>Products related to this item</h2>\n")
	for _, i := range rng.Perm(len(s.Products))[:2*w.detail+1] {
		if i == st.Product {
			continue
		}
		r := s.Products[i]
		w.raw("<div>")
		w.named("a", "related."+r.Slug+".view_product", "", r.Title)
		w.raw(" <span>" + price(r.Cents) + "</span></div>\n")
	}
	w.raw("<h2>Top reviews from the United States</h2>\n")
}

func (s *Store) cartPage(w *pageWriter, st State) {
	w.raw("<h1>Shopping Cart</h1>\n")
	if len(st.Cart) == 0 {
		w.raw("<p>Your ShopSim Cart is empty.</p>\n")
	}
	total := 0
	for _, i := range st.Cart {
		p := s.Products[i]
		total += p.Cents
		w.group("div", "cart."+p.Slug, ` class="sc-item"`)
		w.named("a", "cart."+p.Slug+".view_product", "", p.Title)
		w.raw(" <span>" + price(p.Cents) + "</span> <span>In Stock</span> ")
		w.named("button", "cart."+p.Slug+".delete", "", "Delete")
		if w.detail >= 1 {
			w.named("button", "cart."+p.Slug+".save_for_later", "", "Save for later")
		}
		w.raw("</div>\n")
	}
	if len(st.Cart) > 0 {
		w.raw(fmt.Sprintf("<div>Subtotal (%d items): %s</div>\n", len(st.Cart), price(total)))
		w.named("button", "cart.buy_now", "", "Proceed to checkout")
	}
	w.named("a", "cart.continue_shopping", "", "Continue shopping")
	w.raw("\n")
	if w.detail >= 1 {
		w.raw("<h2>Customers who bought items in your cart also bought</h2>\n")
		s.recommended(w, st, 2*w.detail)
	}
}

func (s *Store) recommended(w *pageWriter, st State, n int) {
	for k := range n {
		r := s.Products[(st.Product+7*k+len(st.Cart)+1)%len(s.Products)]
		w.raw("<div>")
		w.named("a", "recommended."+r.Slug+".view_product", "", r.Title)
		w.raw(" <span>" + price(r.Cents) + "</span></div>\n")
	}
}

func (s *Store) checkoutPage(w *pageWriter, st State) {
	total := 0
	for _, i := range st.Cart {
		total += s.Products[i].Cents
	}
	w.raw(fmt.Sprintf("<h1>Checkout (%d items)</h1>\n", len(st.Cart)))
	w.group("section", "checkout.address", "")
	w.raw("<h3>1 Shipping address</h3><p>Jordan Lee, 1200 Pine St Apt 4, Seattle, WA 98101</p>")
	w.named("a", "checkout.address.change", "", "Change")
	w.raw("</section>\n")
	w.group("section", "checkout.payment", "")
	w.raw("<h3>2 Payment method</h3><p>Visa ending in 4242</p>")
	w.named("a", "checkout.payment.change", "", "Change")
	if w.detail >= 1 {
		w.raw(" ")
		w.input("checkout.gift_card_code", "")
		w.named("button", "checkout.apply_gift_card", "", "Apply")
	}
	w.raw("</section>\n")
	w.group("section", "checkout.shipping", "")
	w.raw("<h3>3 Review items and shipping</h3><ul>")
	for _, i := range st.Cart {
		w.raw("<li>")
		w.text(s.Products[i].Title)
		w.raw(" " + price(s.Products[i].Cents) + "</li>")
	}
	w.raw("</ul>")
	w.check("radio", "checkout.shipping.standard", true, "FREE Standard delivery: Jun 6 - Jun 9")
	w.check("radio", "checkout.shipping.express", false, "Express: tomorrow, $9.99")
	w.raw(fmt.Sprintf("</section>\n<div>Order total: %s</div>\n", price(total)))
	w.named("button", "checkout.place_order", "", "Place your order")
	w.raw(" ")
	w.named("a", "checkout.back_to_cart", "", "Return to cart")
	w.raw("\n")
}

func (s *Store) confirmationPage(w *pageWriter, st State) {
	w.raw("<h1>Order placed, thank you!</h1>\n<p>Confirmation will be sent to your email. Arriving Jun 6 - Jun 9.</p>\n")
	w.named("a", "confirmation.review_order", "", "Review or edit your recent orders")
	w.raw(" ")
	w.named("a", "confirmation.continue_shopping", "", "Continue shopping")
	w.raw("\n")
	if w.detail >= 1 {
		w.raw("<h2>Recommended for you</h2>\n")
		s.recommended(w, st, 2*w.detail)
	}
}

// fill pads the page with unnamed review text up to about target bytes
// (short reviews, so it overshoots by little).
func (s *Store) fill(w *pageWriter, st State, rng *rand.Rand, target int) {
	for w.b.Len()+120 < target {
		p := s.Products[st.Product]
		if st.Kind != PageProduct {
			p = s.Products[rng.IntN(len(s.Products))]
		}
		w.raw(`<div class="review"><span>` + stars(10*(2+rng.IntN(4))) + "</span> <h4>")
		w.text(pick(rng, reviewTitles))
		w.raw("</h4><p>")
		n := 1 + rng.IntN(3)
		for k := range n {
			if k > 0 {
				w.raw(" ")
			}
			w.text(fmt.Sprintf(pick(rng, reviewSentences), strings.ToLower(p.Category.Name), p.Brand))
		}
		w.raw("</p></div>\n")
	}
}

var (
	reviewTitles    = []string{"Great value", "Runs small", "Exactly as described", "Would buy again", "Not for me", "Solid quality", "Good but pricey", "Perfect for travel"}
	reviewSentences = []string{
		"I bought this %s for a week of hiking and it held up well; %s quality as usual.",
		"The %s fits true to size, though the sleeves run a little long on me. %s customer service was helpful.",
		"After three months of daily use my %s still looks new. I would recommend %s to friends.",
		"Shipping was fast and the %s arrived well packed; the color is darker than the photos suggest (%s).",
		"For the price this %s is hard to beat, but the zipper feels cheaper than other %s gear I own.",
		"I returned the first %s because of a loose seam; the replacement from %s was perfect.",
		"My partner liked the %s so much we ordered a second one. Typical %s: comfortable and durable.",
	}
)
