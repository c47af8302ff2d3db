package batching

import (
	"fmt"

	"go.uber.org/zap"
)

// contain runs fn, work the scheduler does for one sequence (its sampler
// and constraint on a sampling worker; accepting its token, its stop
// strings and emitting its text on the loop; setting up its KV; asking its
// constraint for an opening in Submit) or one engine step, and returns a
// panic in it as an error, logged with its stack. It is the one place the
// scheduler recovers: the caller fails the sequence the work was for (for
// an engine step, the sequences in it), and everything else goes on. A
// panic anywhere else is a bug of the scheduler itself.
func (s *Scheduler) contain(what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("recovered a panic", zap.String("in", what), zap.Any("panic", r), zap.Stack("stack"))
			err = fmt.Errorf("%s panic: %v", what, r)
		}
	}()
	return fn()
}
