package llamacpp

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
