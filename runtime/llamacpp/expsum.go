package llamacpp

/*
// From ggml-cpu's vec.h (same binary, C linkage): y[i] = exp(x[i] - max)
// for i < n, vectorised (AVX2, AVX-512, NEON where the build has them),
// and the sum of y.
extern double ggml_vec_soft_max_f32(const int n, float * y, const float * x, float max);
*/
import "C"

import (
	"math"

	"github.com/nextact/nextact/batching"
)

var _ batching.ExpSummer = (*Engine)(nil)

// ExpSum is the sum of e^(l - max) over row, by ggml's vectorised exp, a
// chunk of len(scratch) logits at a time (scratch receives each chunk's
// terms: a small one stays in the core's cache). NaN when a logit is NaN,
// or scratch is empty. Goroutine-safe: it touches only its arguments.
func (e *Engine) ExpSum(row []float32, max float32, scratch []float32) float64 {
	if len(scratch) == 0 {
		return math.NaN()
	}
	var sum float64
	for i := 0; i < len(row); i += len(scratch) {
		n := min(len(scratch), len(row)-i)
		sum += float64(C.ggml_vec_soft_max_f32(C.int(n), (*C.float)(&scratch[0]), (*C.float)(&row[i]), C.float(max)))
	}
	return sum
}
