package eval

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nextact/nextact/bench"
	"github.com/nextact/nextact/nextaction"
)

// FixtureOptions shape GenerateFixture's sessions; a zero field takes its
// default.
type FixtureOptions struct {
	// Sessions is how many sessions (default 24).
	Sessions int
	// MaxSteps is each session's step budget (default 8); a session ends
	// sooner at a terminate or a buy-now click.
	MaxSteps int
	// PageBytes is the store's page size (default 1500).
	PageBytes int
	// LongPageEvery pads every n-th page (counting all sessions' pages)
	// with unnamed review text to LongPageBytes (default 0: none).
	LongPageEvery, LongPageBytes int
	Seed                         uint64
}

// Fixture is a generated data set: realistic sessions on the bench's
// synthetic store, in an order to write them in.
type Fixture struct {
	Sessions []Session
	// Users maps a session id to its user id.
	Users map[string]string
	// Order is the (shuffled) order of the steps in the written files.
	Order []StepRef
}

// StepRef names step Step of Sessions[Session].
type StepRef struct{ Session, Step int }

// GenerateFixture simulates shoppers on bench.NewStore's pages: each
// session starts on the results of its persona's search and takes, on each
// page, the store's seeded fallback action (the weighted choice of a real
// shopper's likely next action on that kind of page), until a terminate or
// a buy-now click (a purchase) or the step budget, which ends with a
// terminate. Steps carry OPeRA's click types, rationales on about 40% of
// them, and timestamps with ties (broken by action_id, numeric). It
// depends only on o.
func GenerateFixture(o FixtureOptions) *Fixture {
	o = o.withDefaults()
	store := bench.NewStore(o.Seed, o.PageBytes)
	rng := rand.New(rand.NewPCG(o.Seed, 0xf1c7))
	f := &Fixture{Users: map[string]string{}}
	var user, survey string
	base := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	pages := 0
	for i := range o.Sessions {
		persona, st := store.Shopper(i)
		if user == "" || rng.IntN(3) == 0 { // a new user; the survey is a user's, for all their sessions
			user = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<12), rng.Uint64()>>16)
			b, _ := json.Marshal(map[string]string{"user_id": user, "shopping_style": persona, "age_range": pick(rng, ageRanges), "shopping_frequency": pick(rng, frequencies)})
			survey = string(b)
		}
		s := Session{Persona: survey}
		srng := rand.New(rand.NewPCG(o.Seed, uint64(i)))
		t := base.Add(time.Duration(i) * 2 * time.Hour)
		start := t
		for k := range o.MaxSteps {
			page := store.Render(st)
			html := page.HTML
			if pages++; o.LongPageEvery > 0 && pages%o.LongPageEvery == 0 {
				html = padPage(html, o.LongPageBytes, srng)
			}
			a := store.Fallback(page, srng)
			if k == o.MaxSteps-1 {
				a = nextaction.Action{Type: nextaction.TypeTerminate}
			}
			next := store.Navigate(st, a)
			buy := next.Purchased && !st.Purchased
			step := Step{Page: html, Action: a, ClickType: clickType(a, buy)}
			if srng.IntN(5) < 2 {
				step.Rationale = rationale(a, buy, srng)
			}
			if k != 1 || srng.IntN(4) == 0 { // step 2 usually shares step 1's time
				t = t.Add(time.Duration(5+srng.IntN(90)) * time.Second)
			}
			step.Timestamp = t.Format("2006-01-02T15:04:05.000Z")
			step.ActionID = strconv.Itoa((k+9)*100000 + i) // 900000+i, 1000000+i: text order differs
			s.Steps = append(s.Steps, step)
			if a.Type == nextaction.TypeTerminate || buy {
				break
			}
			st = next
		}
		s.ID = user + "_" + start.Format("2006-01-02T15:04:05") + "_" + t.Format("2006-01-02T15:04:05")
		f.Users[s.ID] = user
		f.Sessions = append(f.Sessions, s)
	}
	f.Order = stepsInOrder(f.Sessions)
	rng.Shuffle(len(f.Order), func(i, j int) { f.Order[i], f.Order[j] = f.Order[j], f.Order[i] })
	return f
}

func (o FixtureOptions) withDefaults() FixtureOptions {
	if o.Sessions <= 0 {
		o.Sessions = 24
	}
	if o.MaxSteps <= 0 {
		o.MaxSteps = 8
	}
	if o.PageBytes <= 0 {
		o.PageBytes = 1500
	}
	if o.LongPageBytes <= 0 {
		o.LongPageBytes = 64 << 10
	}
	return o
}

var (
	ageRanges   = []string{"18-24", "25-34", "35-44", "45-54", "55-64"}
	frequencies = []string{"weekly", "monthly", "a few times a year"}
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// clickType is OPeRA's click_type of a generated click.
func clickType(a nextaction.Action, buy bool) string {
	n := a.Name
	switch {
	case a.Type != nextaction.TypeClick:
		return ""
	case buy, strings.HasSuffix(n, "add_to_cart"), n == "checkout.place_order":
		return ClickTypePurchase
	case strings.HasSuffix(n, "view_product"):
		return "product_link"
	case strings.HasSuffix(n, "customer_reviews"):
		return "review"
	case strings.HasPrefix(n, "refinements."), strings.HasPrefix(n, "sort_by."):
		return "filter"
	case strings.HasPrefix(n, "pagination."):
		return "page_related"
	case strings.HasSuffix(n, ".delete"):
		return "quantity"
	case strings.HasPrefix(n, "nav."), strings.Contains(n, "back_to"), strings.Contains(n, "continue_shopping"):
		return "nav_bar"
	case n == "search_button":
		return "search"
	}
	return "other"
}

// rationale writes a first-person reason for a generated action.
func rationale(a nextaction.Action, buy bool, rng *rand.Rand) string {
	var opts []string
	switch {
	case a.Type == nextaction.TypeTerminate:
		opts = []string{"Nothing here fits what I need, so I'm leaving.", "I've seen enough for today.", "The prices are higher than I hoped; I'll come back later."}
	case a.Type == nextaction.TypeTypeAndSubmit:
		opts = []string{"I'll search for " + a.Text + " directly.", "Let me look up " + a.Text + "."}
	case buy:
		opts = []string{"This is exactly what I was looking for, and the price is right.", "Good reviews and within budget: buying it now."}
	case strings.HasSuffix(a.Name, "view_product"):
		opts = []string{"This one looks promising; I want to see the details.", "The rating is good, let me open it."}
	case strings.HasPrefix(a.Name, "refinements."), strings.HasPrefix(a.Name, "sort_by."):
		opts = []string{"Too many results; I'll narrow them down.", "I only want well-rated items."}
	default:
		opts = []string{"I want to check this.", "Let me see what this does."}
	}
	return pick(rng, opts)
}

// padPage appends unnamed review text to doc up to about size bytes.
func padPage(doc string, size int, rng *rand.Rand) string {
	var b strings.Builder
	b.Grow(size + 256)
	b.WriteString(doc)
	b.WriteString(`<div class="all-reviews">`)
	for b.Len() < size {
		fmt.Fprintf(&b, `<div class="review"><span>%d.0 out of 5 stars</span><p>%s %s</p></div>`, 1+rng.IntN(5), pick(rng, padSentences), pick(rng, padSentences))
	}
	b.WriteString("</div>")
	return b.String()
}

var padSentences = []string{
	"Bought this for my son and he loves it.", "Arrived two days late but in perfect condition.",
	"The material feels cheaper than the photos suggest.", "Fits true to size; I ordered a medium.",
	"Customer service replaced it without questions.", "Would not buy again at this price.",
}

// WriteFiles writes f under dir as sessions.jsonl and, under dir/opera,
// OPeRA's Parquet layout (see WriteParquet), and returns both paths.
func (f *Fixture) WriteFiles(dir string) (jsonlPath, parquetDir string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	jsonlPath = filepath.Join(dir, "sessions.jsonl")
	w, err := os.Create(jsonlPath)
	if err != nil {
		return "", "", err
	}
	if err := WriteJSONL(w, f.Sessions, f.Order); err != nil {
		w.Close()
		return "", "", err
	}
	if err := w.Close(); err != nil {
		return "", "", err
	}
	parquetDir = filepath.Join(dir, "opera")
	return jsonlPath, parquetDir, WriteParquet(parquetDir, f.Sessions, f.Order, f.Users)
}
