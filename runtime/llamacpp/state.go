package llamacpp

/*
#include <stddef.h>
#include <stdint.h>
struct llama_context;
// From llama.h (same binary): a sequence's KV state, as bytes, for the
// scheduler's host tier. The Go wrapper does not expose them.
extern size_t llama_state_seq_get_size(struct llama_context * ctx, int32_t seq_id);
extern size_t llama_state_seq_get_data(struct llama_context * ctx, uint8_t * dst, size_t size, int32_t seq_id);
extern size_t llama_state_seq_set_data(struct llama_context * ctx, const uint8_t * src, size_t size, int32_t dest_seq_id);
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// SaveSeq copies a sequence's KV (every cell it holds, with positions)
// into host memory. It waits for the step in flight. The bytes restore
// into any sequence of this engine with RestoreSeq, and only of this
// engine: they depend on the model, the context and the KV types.
func (e *Engine) SaveSeq(seq int32) ([]byte, error) {
	if seq < 0 || int(seq) >= e.cfg.Slots {
		return nil, fmt.Errorf("save sequence %d: outside [0, %d)", seq, e.cfg.Slots)
	}
	ctx := (*C.struct_llama_context)(e.cctx)
	size := C.llama_state_seq_get_size(ctx, C.int32_t(seq))
	if size == 0 || uint64(size) > maxStateBytes {
		return nil, fmt.Errorf("save sequence %d: state of %d bytes", seq, uint64(size))
	}
	buf := make([]byte, int(size))
	n := C.llama_state_seq_get_data(ctx, (*C.uint8_t)(unsafe.Pointer(&buf[0])), size, C.int32_t(seq))
	if n != size {
		return nil, fmt.Errorf("save sequence %d: wrote %d of %d bytes", seq, uint64(n), uint64(size))
	}
	return buf, nil
}

// RestoreSeq replaces a sequence's KV with state from SaveSeq (of any
// sequence of this engine). On a failure llama.cpp leaves the sequence
// empty.
func (e *Engine) RestoreSeq(seq int32, state []byte) error {
	if seq < 0 || int(seq) >= e.cfg.Slots {
		return fmt.Errorf("restore sequence %d: outside [0, %d)", seq, e.cfg.Slots)
	}
	if len(state) == 0 || uint64(len(state)) > maxStateBytes {
		return fmt.Errorf("restore sequence %d: state of %d bytes", seq, len(state))
	}
	ctx := (*C.struct_llama_context)(e.cctx)
	if C.llama_state_seq_set_data(ctx, (*C.uint8_t)(unsafe.Pointer(&state[0])), C.size_t(len(state)), C.int32_t(seq)) == 0 {
		return fmt.Errorf("restore sequence %d: llama.cpp refused the state", seq)
	}
	return nil
}

// maxStateBytes bounds one sequence's state: far above any slot's KV
// (131,072 positions at 1 MiB each), so only a corrupt size trips it.
const maxStateBytes = 1 << 37
