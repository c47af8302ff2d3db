package eval

import (
	"github.com/nextact/nextact/nextaction"
)

// The statuses of a case's result.
const (
	// StatusOK: the target answered (the answer may still not parse).
	StatusOK = "ok"
	// StatusFailed: the request failed, after the retries it was allowed.
	StatusFailed = "failed"
	// StatusNotSent: no request could fit the target's limits (see the
	// reduction policy); nothing was sent.
	StatusNotSent = "not_sent"
)

// The error categories of a wrong case. The first five are the paper's;
// the others are ours.
const (
	ErrDidNotTerminate = "did_not_terminate"        // truth terminate, predicted another type
	ErrDidNotClick     = "did_not_click"            // truth click, predicted another type
	ErrDidNotSearch    = "did_not_search"           // truth type_and_submit, predicted another type
	ErrWrongKeyword    = "searched_wrong_keyword"   // both type_and_submit, other text
	ErrWrongElement    = "clicked_wrong_element"    // both click, other element
	ErrWrongInput      = "typed_into_wrong_element" // both type_and_submit, same text, other input
	ErrUnparsed        = "unparsed_answer"          // no action in the answer
	ErrInvalid         = "invalid_answer"           // an action not valid on the page
	ErrFailed          = "request_failed"
	ErrNotSent         = "not_sent"
)

// ErrorCategories lists the categories in report order.
var ErrorCategories = []string{ErrDidNotTerminate, ErrDidNotClick, ErrDidNotSearch, ErrWrongKeyword, ErrWrongElement,
	ErrWrongInput, ErrUnparsed, ErrInvalid, ErrFailed, ErrNotSent}

// Action types of the confusion matrix: the truth's rows are the first
// three; a predicted type not among them is "other", no prediction "none".
const (
	predOther = "other"
	predNone  = "none"
)

// ActionTypes are the action types, in report order.
var ActionTypes = []string{nextaction.TypeClick, nextaction.TypeTypeAndSubmit, nextaction.TypeTerminate}

// PredictedTypes are the confusion matrix's columns.
var PredictedTypes = []string{nextaction.TypeClick, nextaction.TypeTypeAndSubmit, nextaction.TypeTerminate, predOther, predNone}

// Scored is one case's outcome.
type Scored struct {
	Case    *Case
	Status  string
	Correct bool
	// Category is the error category of a wrong case ("" when correct).
	Category string
	// Pred is the predicted action's type, "other", or "none".
	Pred string
	// Unparsed and Invalid mark answers without an action, or with one
	// not valid on the page.
	Unparsed, Invalid bool
	// PredPurchase: the prediction is a click on a purchase element.
	PredPurchase bool
}

// Score judges a case's result: exact match of type, name and text with
// the truth. A nil r is a case without result (counted as failed).
// purchase is the set of purchase element names (Dataset.PurchaseNames).
func Score(c *Case, r *Result, purchase map[string]bool) Scored {
	s := Scored{Case: c, Pred: predNone}
	switch {
	case r == nil:
		s.Status, s.Category = StatusFailed, ErrFailed
		return s
	case r.Status == StatusNotSent:
		s.Status, s.Category = StatusNotSent, ErrNotSent
		return s
	case r.Status != StatusOK:
		s.Status, s.Category = StatusFailed, ErrFailed
		return s
	}
	s.Status = StatusOK
	if r.Action == nil {
		s.Unparsed, s.Category = true, ErrUnparsed
		return s
	}
	a := *r.Action
	s.Pred = a.Type
	if !isActionType(a.Type) {
		s.Pred = predOther
	}
	s.PredPurchase = a.Type == nextaction.TypeClick && purchase[a.Name]
	if a == c.Truth {
		s.Correct = true
		return s
	}
	if !validOn(a, c.Page) {
		s.Invalid, s.Category = true, ErrInvalid
		return s
	}
	s.Category = category(c.Truth, a)
	return s
}

// validOn reports whether a is valid on page; only an action that names
// an element needs the page parsed.
func validOn(a nextaction.Action, page string) bool {
	if a.Type != nextaction.TypeClick && a.Type != nextaction.TypeTypeAndSubmit {
		return a.Validate(nil, 0) == nil
	}
	p, err := nextaction.ParsePage(page)
	return err == nil && a.Validate(p, 0) == nil
}

func isActionType(t string) bool {
	return t == nextaction.TypeClick || t == nextaction.TypeTypeAndSubmit || t == nextaction.TypeTerminate
}

// category is the error category of a valid prediction p that differs
// from the truth t.
func category(t, p nextaction.Action) string {
	switch {
	case t.Type != p.Type:
		switch t.Type {
		case nextaction.TypeTerminate:
			return ErrDidNotTerminate
		case nextaction.TypeClick:
			return ErrDidNotClick
		}
		return ErrDidNotSearch
	case t.Type == nextaction.TypeClick:
		return ErrWrongElement
	case t.Text != p.Text:
		return ErrWrongKeyword
	}
	return ErrWrongInput
}

// Metrics are a run's accuracy and outcome metrics (docs/EVAL.md).
type Metrics struct {
	// Sessions counts the sessions with at least one case.
	Sessions      int                       `json:"sessions"`
	Cases         int                       `json:"cases"`
	Correct       int                       `json:"correct"`
	Accuracy      Value                     `json:"accuracy"`
	MicroAccuracy Value                     `json:"micro_accuracy"`
	ByType        map[string]TypeStats      `json:"by_type"`
	Confusion     map[string]map[string]int `json:"confusion"`
	Errors        map[string]int            `json:"errors"`
	Answers       Answers                   `json:"answers"`
	Outcome       OutcomeMetrics            `json:"outcome"`
	// Histogram counts sessions by accuracy in tenths: [0, 0.1), ...,
	// [0.8, 0.9), [0.9, 1].
	Histogram []int `json:"session_accuracy_histogram"`
}

// Value is a metric with its bootstrap 95% interval; both are null when
// undefined.
type Value struct {
	Value *float64 `json:"value"`
	CI95  *CI      `json:"ci95"`
}

// TypeStats is accuracy on the cases whose truth has one action type.
type TypeStats struct {
	Cases    int      `json:"cases"`
	Correct  int      `json:"correct"`
	Accuracy *float64 `json:"accuracy"`
}

// Answers counts the cases by how their result came back.
type Answers struct {
	Answered int `json:"answered"`
	Unparsed int `json:"unparsed"`
	Invalid  int `json:"invalid"`
	Failed   int `json:"failed"`
	NotSent  int `json:"not_sent"`
}

// OutcomeMetrics is the session outcome: at each session's last step,
// purchase (a purchase click) against no purchase.
type OutcomeMetrics struct {
	Sessions  int      `json:"sessions"`
	TP        int      `json:"tp"`
	FP        int      `json:"fp"`
	FN        int      `json:"fn"`
	TN        int      `json:"tn"`
	Precision *float64 `json:"precision"`
	Recall    *float64 `json:"recall"`
	// F1 is the purchase class's F1 (the headline); F1NoPurchase the
	// other class's; MacroF1 their mean.
	F1           Value    `json:"f1"`
	F1NoPurchase *float64 `json:"f1_no_purchase"`
	MacroF1      Value    `json:"macro_f1"`
}

// Aggregate computes the metrics of scored cases (grouped by session in
// their order), with bootstrap intervals over sessions (reps resamples,
// seeded; none when reps is 0).
func Aggregate(scored []Scored, reps int, seed uint64) Metrics {
	m := Metrics{ByType: map[string]TypeStats{}, Confusion: map[string]map[string]int{}, Errors: map[string]int{}, Histogram: make([]int, 10)}
	for _, t := range ActionTypes {
		m.Confusion[t] = map[string]int{}
		for _, p := range PredictedTypes {
			m.Confusion[t][p] = 0
		}
		m.ByType[t] = TypeStats{}
	}
	for _, c := range ErrorCategories {
		m.Errors[c] = 0
	}
	ss := sessionStats(scored)
	var accSum float64
	var conf [2][2]int
	for _, s := range ss {
		accSum += float64(s.correct) / float64(s.cases)
		m.Histogram[min(s.correct*10/s.cases, 9)]++
		if s.hasOutcome {
			conf[b2i(s.truthBuy)][b2i(s.predBuy)]++
		}
	}
	for _, s := range scored {
		m.Cases++
		truth := s.Case.Truth.Type
		ts := m.ByType[truth]
		ts.Cases++
		if s.Correct {
			m.Correct++
			ts.Correct++
		} else {
			m.Errors[s.Category]++
		}
		m.ByType[truth] = ts
		if m.Confusion[truth] != nil {
			m.Confusion[truth][s.Pred]++
		}
		m.Answers.add(s)
	}
	for t, ts := range m.ByType {
		ts.Accuracy = ratio(ts.Correct, ts.Cases)
		m.ByType[t] = ts
	}
	m.Sessions = len(ss)
	if len(ss) > 0 {
		acc := accSum / float64(len(ss))
		m.Accuracy.Value = &acc
	}
	m.MicroAccuracy.Value = ratio(m.Correct, m.Cases)
	m.Outcome = outcomeMetrics(conf)
	m.Accuracy.CI95, m.MicroAccuracy.CI95, m.Outcome.F1.CI95, m.Outcome.MacroF1.CI95 = bootstrapCIs(ss, reps, seed)
	return m
}

func (a *Answers) add(s Scored) {
	switch s.Status {
	case StatusOK:
		a.Answered++
	case StatusNotSent:
		a.NotSent++
	default:
		a.Failed++
	}
	if s.Unparsed {
		a.Unparsed++
	}
	if s.Invalid {
		a.Invalid++
	}
}

func outcomeMetrics(conf [2][2]int) OutcomeMetrics {
	o := OutcomeMetrics{TP: conf[1][1], FP: conf[0][1], FN: conf[1][0], TN: conf[0][0]}
	o.Sessions = o.TP + o.FP + o.FN + o.TN
	o.Precision = ratio(o.TP, o.TP+o.FP)
	o.Recall = ratio(o.TP, o.TP+o.FN)
	f1, ok, macro, macroOK := outcomeF1(conf)
	if ok {
		o.F1.Value = &f1
	}
	if f0, ok0 := F1(o.TN, o.FN, o.FP); ok0 {
		o.F1NoPurchase = &f0
	}
	if macroOK {
		o.MacroF1.Value = &macro
	}
	return o
}

// sessionStats groups scored cases by session (consecutive cases of one
// session, as Dataset.Cases orders them).
func sessionStats(scored []Scored) []sessionStat {
	var out []sessionStat
	prev := ""
	for i, s := range scored {
		if i == 0 || s.Case.SessionID != prev {
			out = append(out, sessionStat{})
			prev = s.Case.SessionID
		}
		st := &out[len(out)-1]
		st.cases++
		if s.Correct {
			st.correct++
		}
		if s.Case.Last {
			st.hasOutcome, st.truthBuy, st.predBuy = true, s.Case.Purchase, s.PredPurchase
		}
	}
	return out
}
