package batching_test

import (
	"time"

	"github.com/nextact/nextact/batching"
	"github.com/nextact/nextact/batching/batchingtest"
)

// The engine of these tests is the kit's hash model (batchingtest), used
// where the real engine cannot stage a case (failures, blocking, exact
// batch plans): the next token after a history is a hash of the whole
// history, so any mix-up of positions or sequences changes the output.
const (
	testVocab = 260
	testEOG   = 256
)

// hashModel is the hash model over testVocab tokens; without eog it never
// ends a sequence by itself.
func hashModel(eog bool) *batchingtest.Model {
	e := int32(testEOG)
	if !eog {
		e = -1
	}
	return batchingtest.NewModel(testVocab, []int32{testEOG}, batchingtest.HashNext(e))
}

// gated makes e's Decode wait for a value on gate (or its close) first.
func gated(e *batchingtest.Engine, gate chan struct{}) *batchingtest.Engine {
	next := e.DecodeFunc
	e.DecodeFunc = func(b *batching.Batch) error {
		<-gate
		return next(b)
	}
	return e
}

// slowed makes e's Decode take at least d, so requests overlap in time.
func slowed(e *batchingtest.Engine, d time.Duration) *batchingtest.Engine {
	next := e.DecodeFunc
	e.DecodeFunc = func(b *batching.Batch) error {
		time.Sleep(d)
		return next(b)
	}
	return e
}
