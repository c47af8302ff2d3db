package llamacpp

/*
#include <stdbool.h>
#include <stdint.h>
struct llama_vocab;
// From llama.h (same binary): the Go wrapper does not expose it.
extern bool llama_vocab_is_control(const struct llama_vocab * vocab, int32_t token);
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
