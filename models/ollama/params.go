package ollama

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Params are a model's parameters from its params layer (what a Modelfile's
// PARAMETER lines set), as Ollama writes them: a JSON object of options.
type Params struct {
	// Stop are the stop strings (at most 16, each at most 256 bytes).
	Stop []string
	// The sampling defaults nextact applies; nil when not set.
	Temperature, TopP *float64
	TopK, Seed        *int
	// NumPredict is the default most tokens to generate (-1: no bound).
	NumPredict *int
	// NumCtx is the context the model was meant to run with.
	NumCtx *int
	// Ignored names the parameters nextact does not apply (repeat_penalty,
	// min_p, mirostat ...), sorted.
	Ignored []string
	// Raw is every parameter as written, for display (/api/show).
	Raw map[string]json.RawMessage
}

// parseParams reads a params layer. A value of the wrong type for a
// parameter nextact applies is an error; others are kept raw and listed
// as ignored.
func parseParams(data []byte) (Params, error) {
	var p Params
	if err := json.Unmarshal(data, &p.Raw); err != nil {
		return Params{}, fmt.Errorf("params: %w", err)
	}
	for key, raw := range p.Raw {
		var err error
		switch key {
		case "stop":
			p.Stop, err = parseStop(raw)
		case "temperature":
			p.Temperature, err = parseFloat(raw, 0, 2)
		case "top_p":
			p.TopP, err = parseFloat(raw, 0, 1)
		case "top_k":
			p.TopK, err = parseInt(raw, 0, math.MaxInt32)
		case "seed":
			p.Seed, err = parseInt(raw, math.MinInt64, math.MaxInt64)
		case "num_predict":
			p.NumPredict, err = parseInt(raw, -2, math.MaxInt32)
		case "num_ctx":
			p.NumCtx, err = parseInt(raw, 1, math.MaxInt32)
		default:
			p.Ignored = append(p.Ignored, key)
		}
		if err != nil {
			return Params{}, fmt.Errorf("params: %s: %w", key, err)
		}
	}
	slices.Sort(p.Ignored)
	return p, nil
}

// parseStop reads a stop string or a list of them.
func parseStop(raw json.RawMessage) ([]string, error) {
	var stops []string
	if err := json.Unmarshal(raw, &stops); err != nil {
		var one string
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, fmt.Errorf("neither a string nor a list of strings")
		}
		stops = []string{one}
	}
	if len(stops) > maxStops {
		return nil, fmt.Errorf("%d stop strings, more than %d", len(stops), maxStops)
	}
	for _, s := range stops {
		if s == "" || len(s) > maxStopBytes || strings.ContainsRune(s, 0) {
			return nil, fmt.Errorf("stop string %.40q: empty, over %d bytes or with a NUL", s, maxStopBytes)
		}
	}
	return stops, nil
}

func parseFloat(raw json.RawMessage, lo, hi float64) (*float64, error) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("not a number")
	}
	if math.IsNaN(f) || f < lo || f > hi {
		return nil, fmt.Errorf("%v outside [%v, %v]", f, lo, hi)
	}
	return &f, nil
}

func parseInt(raw json.RawMessage, lo, hi int64) (*int, error) {
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		// Ollama writes integers from Modelfiles as JSON numbers; accept
		// an integral float too.
		var f float64
		if json.Unmarshal(raw, &f) != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return nil, fmt.Errorf("not an integer")
		}
		n = int64(f)
	}
	if n < lo || n > hi {
		return nil, fmt.Errorf("%d outside [%d, %d]", n, lo, hi)
	}
	v := int(n)
	return &v, nil
}
