package eval_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Runs start workers and a progress printer; none may outlive a run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
