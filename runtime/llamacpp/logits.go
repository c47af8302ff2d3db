package llamacpp

/*
#include <stdint.h>
struct llama_context;
// From llama.h (same binary). The Go wrapper's GetLogitsIth allocates and
// copies a whole vocabulary row per call; these give the engine's own
// buffer.
extern float * llama_get_logits(struct llama_context * ctx);
extern float * llama_get_logits_ith(struct llama_context * ctx, int32_t i);
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/ollama/ollama/llama"
)

// contextPtr is the llama_context a llama.Context wraps. The wrapper does
// not export it; in github.com/ollama/ollama/llama v0.17.4 the type is
//
//	type Context struct {
//		c          *C.struct_llama_context
//		numThreads int
//	}
//
// so the pointer is the struct's first word. TestLogitsViewMatchesWrapper
// compares what this reads with the wrapper's GetLogitsIth, so a change of
// that layout fails the tests instead of reading garbage.
func contextPtr(c *llama.Context) unsafe.Pointer {
	return unsafe.Pointer(*(**C.struct_llama_context)(unsafe.Pointer(c)))
}

// logitsView returns the logits row of output j (the j-th batch entry that
// asked for logits, in batch order: llama.h documents that
// llama_get_logits stores them contiguously in that order). The first call
// after a Decode waits for the computation (llama_get_logits synchronises)
// and keeps the buffer's address for the rest of the step.
func (e *Engine) logitsView(j int) ([]float32, error) {
	if e.logits == nil {
		p := C.llama_get_logits((*C.struct_llama_context)(e.cctx))
		if p == nil {
			return nil, fmt.Errorf("engine returned no logits")
		}
		e.logits = unsafe.Pointer(p)
	}
	row := unsafe.Add(e.logits, uintptr(j)*uintptr(e.nVocab)*unsafe.Sizeof(float32(0)))
	return unsafe.Slice((*float32)(row), e.nVocab), nil
}

// logitsIth is llama_get_logits_ith without a copy: for tests that check
// the view's addressing against llama.cpp's own.
func (e *Engine) logitsIth(i int) unsafe.Pointer {
	return unsafe.Pointer(C.llama_get_logits_ith((*C.struct_llama_context)(e.cctx), C.int32_t(i)))
}
