package main

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nextact/nextact/server"
)

// Priority classes reach the scheduler over HTTP: with the only slot busy,
// a high-priority request that arrives after three low-priority ones is
// served before all of them.
func TestPriorityHeaderOrdersTheQueue(t *testing.T) {
	c := testConfig()
	c.Slots = 1
	c.StepTokens = 64
	c.Ctx = 4096
	ts := startServer(t, c)
	resp, r, err := startStream(ts.URL, longStreamBody(ts.modelID()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	send := func(priority string) func() (time.Time, error) {
		return func() (time.Time, error) {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/chat/completions",
				strings.NewReader(`{"model":"nextact-tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":8,"temperature":0}`))
			req.Header.Set(server.PriorityHeader, priority)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return time.Time{}, err
			}
			_, _ = io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Errorf("%s: status %d", priority, res.StatusCode)
			}
			return time.Now(), nil
		}
	}
	var wg sync.WaitGroup
	done := make([]time.Time, 4)
	for i, p := range []string{"low", "low", "low", "high"} {
		waitFor := i // queue them in this order
		for ts.stack.sched.Stats().Waiting < waitFor {
			time.Sleep(time.Millisecond)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := send(p)()
			if err != nil {
				t.Error(err)
			}
			done[i] = at
		}()
	}
	for ts.stack.sched.Stats().Waiting < 4 {
		time.Sleep(time.Millisecond)
	}
	if err := readToDone(r); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i := range 3 {
		if !done[3].Before(done[i]) {
			t.Fatalf("high priority finished at %v, after low %d at %v", done[3], i, done[i])
		}
	}
}
