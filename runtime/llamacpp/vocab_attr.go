package llamacpp

/*
#include <stdbool.h>
#include <stdint.h>
struct llama_vocab;
// From llama.h (same binary): the Go wrapper does not expose them.
extern bool llama_vocab_is_control(const struct llama_vocab * vocab, int32_t token);
extern const char * llama_vocab_get_text(const struct llama_vocab * vocab, int32_t token);
// Returns enum llama_token_attr, an int-sized enum.
extern int llama_vocab_get_attr(const struct llama_vocab * vocab, int32_t token);
*/
import "C"

import (
	"unsafe"

	"github.com/ollama/ollama/llama"
)

// isControl reports whether tok is a control token (<|eot_id|>,
// <|start_header_id|>...). Constrained decoders must never emit one inside
// text, though its piece looks like text.
func isControl(m *llama.Model, tok int) bool {
	v := (*C.struct_llama_vocab)(unsafe.Pointer(m.Vocab()))
	return bool(C.llama_vocab_is_control(v, C.int32_t(tok)))
}

// vocabAttr is a token's llama_token_attr bits. tok must be in the
// vocabulary.
func vocabAttr(m *llama.Model, tok int) int {
	v := (*C.struct_llama_vocab)(unsafe.Pointer(m.Vocab()))
	return int(C.llama_vocab_get_attr(v, C.int32_t(tok)))
}

// vocabText is a token's text as the vocabulary stores it (what llama.cpp
// matches special tokens against). tok must be in the vocabulary.
func vocabText(m *llama.Model, tok int) string {
	v := (*C.struct_llama_vocab)(unsafe.Pointer(m.Vocab()))
	return C.GoString(C.llama_vocab_get_text(v, C.int32_t(tok)))
}
