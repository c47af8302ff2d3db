package llamacpp

import "unsafe"

// WrapperLogits is the wrapper's own copy of entry i's row (what Logits
// returned before it became a view).
func (e *Engine) WrapperLogits(i int) []float32 { return e.ctx.GetLogitsIth(i) }

// LogitsIthAddr is where llama_get_logits_ith says entry i's row is.
func (e *Engine) LogitsIthAddr(i int) unsafe.Pointer { return e.logitsIth(i) }

// ModelLayers is llama_model_n_layer of the engine's model.
func (e *Engine) ModelLayers() int { return modelLayers(e.model) }

// PropsNames is each device's name and description read from its props.
func PropsNames() [][2]string { return propsNames() }

// AssignLayers is assignLayers, for tables of devices.
func AssignLayers(devs []Device, nLayer, gpuLayers int) { assignLayers(devs, nLayer, gpuLayers) }

// TokenizeWhole tokenizes text in one llama.cpp call, as Tokenize did
// before it cut text with many special tokens: the reference.
func (e *Engine) TokenizeWhole(text string, parseSpecial bool) ([]int32, error) {
	toks, err := e.model.Tokenize(text, false, parseSpecial)
	out := make([]int32, len(toks))
	for i, t := range toks {
		out[i] = int32(t)
	}
	return out, err
}
