package server

import (
	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/nextaction"
)

// The scheduler finds the optional extensions of a constraint (Allower,
// Forcer) by type assertion; these checks make a renamed or changed
// method a compile error here instead of a silent loss of rejection
// sampling or forced tokens.
var (
	_ Generator = (*batching.Scheduler)(nil)

	_ batching.Constraint = (*nextaction.ActionConstraint)(nil)
	_ batching.Allower    = (*nextaction.ActionConstraint)(nil)
	_ batching.Forcer     = (*nextaction.ActionConstraint)(nil)

	_ batching.Constraint = (*nextaction.ByteConstraint)(nil)
	_ batching.Allower    = (*nextaction.ByteConstraint)(nil)
	_ batching.Forcer     = (*nextaction.ByteConstraint)(nil)
)
