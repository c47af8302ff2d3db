package batching

import (
	"fmt"

	"go.uber.org/zap"
)

// sequence is one request's state inside the scheduler.
type sequence struct {
	req     Request
	h       *Handle
	sampler *sampler
	text    textState
	slot    int32

	// nPast is the number of tokens already in the engine's KV for this
	// sequence; while nPast < len(req.Prompt) the prompt is being prefilled.
	nPast int
	// next is the last sampled token, to be fed at position nPast.
	next      int32
	generated int
	// logitRow is the batch entry whose logits belong to this sequence in
	// the current step, or -1.
	logitRow int
}

func (q *sequence) prefilling() bool { return q.nPast < len(q.req.Prompt) }

// loop owns the engine. It never blocks on a caller.
func (s *Scheduler) loop() {
	defer close(s.done)
	for {
		select {
		case <-s.quit:
			s.shutdownAll()
			return
		default:
		}
		active, closing := s.admit()
		if active == 0 {
			if closing {
				return
			}
			select {
			case <-s.wake:
			case <-s.quit:
			}
			continue
		}
		s.step()
	}
}

// admit drops cancelled requests, moves queued ones into free slots and
// reports how many slots are busy.
func (s *Scheduler) admit() (active int, closing bool) {
	for _, q := range s.slots {
		if q != nil && q.h.ctx.Err() != nil {
			s.finish(q, FinishCancelled, nil)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.queue[:0]
	var cancelled []*sequence
	for _, q := range s.queue {
		if q.h.ctx.Err() != nil {
			cancelled = append(cancelled, q)
			continue
		}
		kept = append(kept, q)
	}
	clear(s.queue[len(kept):])
	s.queue = kept
	for i := range s.slots {
		if s.slots[i] == nil && len(s.queue) > 0 {
			q := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			q.slot = int32(i)
			s.slots[i] = q
			s.running++
		}
	}
	for _, q := range cancelled {
		q.h.finish("", FinishCancelled, nil, Usage{PromptTokens: len(q.req.Prompt)})
	}
	return s.running, s.closing
}

// plan fills the batch: first one token for every decoding sequence, then
// prompt chunks, round-robin, until the step's token budget is spent.
func (s *Scheduler) plan() {
	b := &s.batch
	b.Reset()
	s.owners = s.owners[:0]
	for _, q := range s.slots {
		if q == nil {
			continue
		}
		q.logitRow = -1
		if !q.prefilling() {
			q.logitRow = b.Len()
			b.Add(q.next, int32(q.nPast), q.slot, true)
			s.owners = append(s.owners, q)
		}
	}
	budget := s.cfg.StepTokens - b.Len()
	n := len(s.slots)
	for k := 0; k < n && budget > 0; k++ {
		q := s.slots[(s.rr+k)%n]
		if q == nil || !q.prefilling() {
			continue
		}
		prompt := q.req.Prompt
		end := min(len(prompt), q.nPast+budget)
		for p := q.nPast; p < end; p++ {
			last := p == len(prompt)-1
			if last {
				q.logitRow = b.Len()
			}
			b.Add(prompt[p], int32(p), q.slot, last)
			s.owners = append(s.owners, q)
		}
		budget -= end - q.nPast
	}
	s.rr = (s.rr + 1) % n
}

// step runs one engine step and hands out its results.
func (s *Scheduler) step() {
	s.plan()
	if err := s.decode(); err != nil {
		s.failBatch(err)
		return
	}
	s.mu.Lock()
	s.steps++
	s.mu.Unlock()
	// Advance positions: every batch entry is now in its sequence's KV.
	for _, q := range s.owners {
		q.nPast++
	}
	for _, q := range s.slots {
		if q == nil || q.logitRow < 0 {
			continue
		}
		// A prompt only yields logits on its last chunk; nPast counts the
		// fed token, so decoding continues at nPast.
		s.sampleNext(q)
	}
}

// decode calls the engine, turning a panic in Go-side engine code into an
// error so the loop keeps serving.
func (s *Scheduler) decode() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("engine panic: %v", r)
		}
	}()
	return s.engine.Decode(&s.batch)
}

// sampleNext samples the token after q's last batch entry and decides
// whether q goes on.
func (s *Scheduler) sampleNext(q *sequence) {
	logits, err := s.logits(q.logitRow)
	if err != nil {
		s.finish(q, FinishError, fmt.Errorf("read logits: %w", err))
		return
	}
	tok := q.sampler.sample(logits)
	q.generated++
	if s.vocab.IsEOG(tok) {
		s.finish(q, FinishStop, nil)
		return
	}
	out, stopped := q.text.push(s.vocab.Piece(tok))
	q.h.emit(out)
	switch {
	case stopped:
		s.finish(q, FinishStop, nil)
	case q.generated >= q.req.MaxTokens:
		s.finish(q, FinishLength, nil)
	default:
		q.next = tok
	}
}

func (s *Scheduler) logits(row int) (l []float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("engine panic: %v", r)
		}
	}()
	return s.engine.Logits(row)
}

// failBatch ends every sequence of a failed step with the engine's error.
func (s *Scheduler) failBatch(err error) {
	s.log.Error("engine step failed", zap.Error(err), zap.Int("tokens", s.batch.Len()))
	seen := map[*sequence]bool{}
	for _, q := range s.owners {
		if !seen[q] {
			seen[q] = true
			s.finish(q, FinishError, fmt.Errorf("engine: %w", err))
		}
	}
}

// finish is the one place a running sequence leaves its slot.
func (s *Scheduler) finish(q *sequence, reason FinishReason, err error) {
	text := ""
	if reason == FinishStop || reason == FinishLength {
		text = q.text.flush()
	}
	if cerr := s.engine.ClearSeq(q.slot); cerr != nil {
		s.log.Error("clear sequence", zap.Int32("seq", q.slot), zap.Error(cerr))
	}
	s.slots[q.slot] = nil
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
	q.h.finish(text, reason, err, Usage{PromptTokens: len(q.req.Prompt), CompletionTokens: q.generated})
}

// shutdownAll ends every queued and running request with FinishShutdown.
func (s *Scheduler) shutdownAll() {
	for _, q := range s.slots {
		if q != nil {
			s.finish(q, FinishShutdown, ErrClosed)
		}
	}
	s.mu.Lock()
	queued := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, q := range queued {
		q.h.finish("", FinishShutdown, ErrClosed, Usage{PromptTokens: len(q.req.Prompt)})
	}
}
