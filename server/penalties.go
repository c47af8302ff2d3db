package server

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/nextact/nextact/batching"
)

// penaltyParams are the sampling fields that change logits before
// sampling: OpenAI's presence and frequency penalties and logit_bias,
// vLLM's repetition_penalty and min_p.
type penaltyParams struct {
	PresencePenalty   *float64        `json:"presence_penalty"`
	FrequencyPenalty  *float64        `json:"frequency_penalty"`
	RepetitionPenalty *float64        `json:"repetition_penalty"`
	MinP              *float64        `json:"min_p"`
	LogitBias         json.RawMessage `json:"logit_bias"`
}

// apply validates the fields and sets them in s. Token ids of logit_bias
// are checked against the model's vocabulary by the scheduler (a 400
// naming logit_bias).
func (p *penaltyParams) apply(s *batching.Sampling) error {
	if v := p.PresencePenalty; v != nil {
		if !(math.Abs(*v) <= batching.MaxPenalty) {
			return invalid("presence_penalty", "'presence_penalty' must be between -%d and %d, got %g.", batching.MaxPenalty, batching.MaxPenalty, *v)
		}
		s.PresencePenalty = *v
	}
	if v := p.FrequencyPenalty; v != nil {
		if !(math.Abs(*v) <= batching.MaxPenalty) {
			return invalid("frequency_penalty", "'frequency_penalty' must be between -%d and %d, got %g.", batching.MaxPenalty, batching.MaxPenalty, *v)
		}
		s.FrequencyPenalty = *v
	}
	if v := p.RepetitionPenalty; v != nil {
		if !(*v >= batching.MinRepetitionPenalty && *v <= batching.MaxRepetitionPenalty) {
			return invalid("repetition_penalty", "'repetition_penalty' must be between %g and %d (1 is none), got %g.", batching.MinRepetitionPenalty, batching.MaxRepetitionPenalty, *v)
		}
		s.RepetitionPenalty = *v
	}
	if v := p.MinP; v != nil {
		if !(*v >= 0 && *v <= 1) {
			return invalid("min_p", "'min_p' must be between 0 and 1, got %g.", *v)
		}
		s.MinP = *v
	}
	bias, err := parseLogitBias(p.LogitBias)
	if err != nil {
		return err
	}
	s.LogitBias = bias
	return nil
}

// parseLogitBias reads OpenAI's logit_bias: an object from token ids (as
// strings) to biases in [-100, 100]. null and {} are none.
func parseLogitBias(raw json.RawMessage) (map[int32]float32, error) {
	if isNull(raw) {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, invalid("logit_bias", "'logit_bias' must be an object from token ids to numbers.")
	}
	if len(m) > batching.MaxLogitBiasEntries {
		return nil, invalid("logit_bias", "'logit_bias' has %d entries; at most %d are allowed.", len(m), batching.MaxLogitBiasEntries)
	}
	if len(m) == 0 {
		return nil, nil
	}
	bias := make(map[int32]float32, len(m))
	for k, v := range m {
		id, err := strconv.ParseInt(k, 10, 32)
		if err != nil || id < 0 {
			return nil, invalid("logit_bias", "'logit_bias' keys must be token ids (non-negative integers as strings), got %q.", truncate(k, 32))
		}
		var b float64
		if err := json.Unmarshal(v, &b); err != nil || !(math.Abs(b) <= batching.MaxLogitBias) {
			return nil, invalid("logit_bias", "'logit_bias' values must be numbers between -%d and %d (token %d).", batching.MaxLogitBias, batching.MaxLogitBias, id)
		}
		bias[int32(id)] = float32(b)
	}
	return bias, nil
}
