package nextaction

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// Concurrent misses of one key compile it once: a burst of correlated
// requests (the same page, the same schema) pays one compilation, and the
// others wait for it (the review measured ~100 ms per miss at 1,000 names,
// paid by every request of a burst).
func TestGrammarCacheCompilesOnceUnderConcurrentMisses(t *testing.T) {
	t.Parallel()
	const n = 32
	c := NewGrammarCache(0)
	release := make(chan struct{})
	var compiles atomic.Int32
	compile := func() (*Grammar, error) {
		compiles.Add(1)
		<-release
		return JSONObjectGrammar()
	}
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := c.get("same-key", compile); err != nil {
				t.Error(err)
			}
		})
	}
	// Every request has missed before the compilation ends.
	for {
		if _, misses := c.Stats(); misses == n {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if got := compiles.Load(); got != 1 {
		t.Fatalf("%d compilations for %d concurrent misses of one key, want 1", got, n)
	}
	if n, _ := c.Size(); n != 1 {
		t.Fatalf("%d grammars cached, want 1", n)
	}
}
