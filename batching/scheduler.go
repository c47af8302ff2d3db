package batching

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nextact/nextact/batching/admission"
)

// Config sizes the scheduler.
type Config struct {
	// Slots is the number of sequences decoded together (engine sequence
	// ids 0..Slots-1), at most MaxSlots.
	Slots int
	// QueueSize bounds the requests waiting for a slot; one more is refused
	// (admission.ReasonQueueFull) unless it takes the place of a waiting
	// request of a lower priority.
	QueueSize int
	// StepTokens is the token budget of one engine step: one token per
	// decoding sequence, the rest filled with prompt chunks. At least Slots.
	StepTokens int
	// CtxPerSlot is the number of positions one sequence may hold.
	CtxPerSlot int
	// Seeds draws a seed for requests that give none; nil uses math/rand/v2.
	Seeds func() uint64
	// NoPrefixCache turns the prefix cache off even when the engine can
	// reuse KV (see KVReuser).
	NoPrefixCache bool
	// EpisodeBypass is how many continuing steps (Request.Continues) may
	// go ahead of one waiting first step; 0 means 2 x Slots, below 0 none.
	EpisodeBypass int
	// HostKVBudget is the host memory, in bytes, that saved KV of idle
	// slots may take (the host tier; see KVSaver); 0 turns it off. It
	// needs the prefix cache.
	HostKVBudget int64
	// Admission holds the admission thresholds (see admission.Config.Decide).
	Admission admission.Config
	// GPU is the GPU telemetry admission reads; nil: none.
	GPU admission.GPUSignals
	// Observer is told admission decisions and finished requests; may be nil.
	Observer Observer
	// Clock returns the current time; nil uses time.Now.
	Clock func() time.Time
	// SampleWorkers is how many sequences of one step are sampled at once,
	// on goroutines that live for that step; 0 means GOMAXPROCS, 1 samples
	// them one after the other on the loop goroutine. The tokens do not
	// depend on it.
	SampleWorkers int
}

func (c Config) validate() error {
	switch {
	case c.Slots < 1 || c.Slots > MaxSlots:
		return fmt.Errorf("slots must be in [1, %d], got %d", MaxSlots, c.Slots)
	case c.QueueSize < 0:
		return fmt.Errorf("queue must not be negative, got %d", c.QueueSize)
	case c.StepTokens < c.Slots:
		return fmt.Errorf("step tokens (%d) must be at least the slot count (%d)", c.StepTokens, c.Slots)
	case c.CtxPerSlot < 2:
		return fmt.Errorf("context per slot must be at least 2, got %d", c.CtxPerSlot)
	case c.HostKVBudget < 0:
		return fmt.Errorf("host KV budget must be at least 0, got %d", c.HostKVBudget)
	case c.SampleWorkers < 0 || c.SampleWorkers > maxSampleWorkers:
		return fmt.Errorf("sample workers must be in [0, %d], got %d", maxSampleWorkers, c.SampleWorkers)
	}
	return c.Admission.Validate()
}

// Stats is a snapshot of the scheduler's load.
type Stats struct {
	Slots   int
	Running int
	Waiting int
	// Steps counts engine steps since start.
	Steps uint64
	// QueueSize is the configured bound of waiting requests.
	QueueSize int
	// ReservedTokens is prompt plus max_tokens of every running and waiting
	// request; RunningReservedTokens of the running ones only.
	ReservedTokens, RunningReservedTokens int
	// CapacityTokens is Slots x CtxPerSlot, the tokens the KV holds.
	CapacityTokens int
	// DrainRate is requests leaving the scheduler per second, over the last
	// 10 s.
	DrainRate float64
	// IdleResidentTokens is the KV tokens idle slots keep for prefix reuse.
	IdleResidentTokens int
	// Host is the host tier of the prefix cache (zero when off).
	Host HostKVStats
}

// KVUsage is the fraction of the KV capacity reserved by running requests,
// 0 to 1.
func (st Stats) KVUsage() float64 {
	if st.CapacityTokens == 0 {
		return 0
	}
	return min(float64(st.RunningReservedTokens)/float64(st.CapacityTokens), 1)
}

// Scheduler groups many requests into each engine step. Submit, Stats and
// Close are goroutine-safe; the engine is touched only by the loop.
type Scheduler struct {
	engine Engine
	vocab  Vocab
	cfg    Config
	log    *zap.Logger

	wake     chan struct{} // capacity 1
	quit     chan struct{} // closed by Close when its ctx ends before the drain
	quitOnce sync.Once
	done     chan struct{} // closed when the loop has exited

	mu      sync.Mutex
	queue   []*sequence
	running int
	steps   uint64
	closing bool
	// Admission state (admission.go).
	adm             admission.Config // cfg.Admission with defaults
	now             func() time.Time
	reserved        int // tokens reserved by running and waiting requests
	runningReserved int
	drain           drainMeter
	idleResident    int // sum of the resident tokens of idle slots (prefix.go)

	// Loop-owned state.
	slots []*sequence
	// view and plans are the planner's input and output (plan.go), one
	// plan per phase; waiting is the view's queue head as sequences, and
	// takenBuf, matches scratch for planNext.
	view     view
	plans    [2]stepPlan
	waiting  []*sequence
	takenBuf []bool
	matches  [][]int
	batch    Batch
	rr       int // round-robin start for prompt chunks
	owners   []*sequence
	// sampled lists, in slot order, the sequences that asked for logits in
	// the step in flight; work is sampleAll's scratch.
	sampled, work []*sequence
	// scratch is each sampling worker's memory (SampleWorkers of them).
	scratch []sampleScratch
	// scoring lists the echo prompt positions of the step in flight, and
	// scoreViews their rows; summer is the engine's ExpSummer, or nil
	// (logprobs.go).
	scoring    []scoreRow
	scoreViews [][]float32
	summer     ExpSummer
	// Prefix cache (prefix.go): the engine's KVReuser when enabled, and
	// what each idle slot's KV holds.
	reuser   KVReuser
	resident []slotKV
	useClock uint64
	// index is the radix tree of every slot's KV: an idle slot's resident
	// tokens, a running slot's prompt (radix.go).
	index *prefixIndex
	// Host tier (hosttier.go): the engine's KVSaver when enabled, the
	// saved KV, the entry each request of the view's queue would restore,
	// and the figures Stats reports (under mu).
	saver     KVSaver
	host      *hostTier
	hostPicks []*hostEntry
	hostStats HostKVStats
}

// New validates cfg and starts the loop goroutine.
func New(engine Engine, vocab Vocab, cfg Config, log *zap.Logger) (*Scheduler, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	if engine == nil || vocab == nil {
		return nil, errors.New("scheduler: engine and vocab are required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Seeds == nil {
		cfg.Seeds = rand.Uint64
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	switch {
	case cfg.EpisodeBypass == 0:
		cfg.EpisodeBypass = 2 * cfg.Slots
	case cfg.EpisodeBypass < 0:
		cfg.EpisodeBypass = 0
	}
	if cfg.SampleWorkers == 0 {
		cfg.SampleWorkers = runtime.GOMAXPROCS(0)
	}
	s := &Scheduler{
		adm:    cfg.Admission.WithDefaults(),
		now:    cfg.Clock,
		engine: engine,
		vocab:  vocab,
		cfg:    cfg,
		log:    log.Named("scheduler"),
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		slots:  make([]*sequence, cfg.Slots),
		view:   view{slots: make([]slotView, cfg.Slots)},

		resident: make([]slotKV, cfg.Slots),
		scratch:  make([]sampleScratch, cfg.SampleWorkers),
	}
	if r, ok := engine.(KVReuser); ok && !cfg.NoPrefixCache {
		s.reuser = r
		s.index = newPrefixIndex(cfg.Slots)
		if sv, ok := engine.(KVSaver); ok && cfg.HostKVBudget > 0 {
			s.saver, s.host = sv, &hostTier{budget: cfg.HostKVBudget}
			s.hostStats.BudgetBytes = cfg.HostKVBudget
		}
	}
	s.summer, _ = engine.(ExpSummer)
	s.drain.since = s.now()
	go s.loop()
	return s, nil
}

// Submit admits or queues a request, or refuses it. It never blocks: a
// loaded scheduler gives an *admission.OverloadError (errors.Is
// admission.ErrOverloaded), a closing one ErrClosed, a malformed request a
// *RequestError. The request ends when ctx ends or Handle.Cancel is called.
// A Forcer constraint is asked for its opening here, on the caller's
// goroutine.
func (s *Scheduler) Submit(ctx context.Context, req Request) (*Handle, error) {
	if err := s.check(&req); err != nil {
		return nil, err
	}
	gpu, gpuOK := s.gpuSnapshot()
	seed := s.cfg.Seeds()
	if req.Sampling.Seed != nil {
		seed = *req.Sampling.Seed
	}
	stops := req.Stop
	if req.Constraint != nil {
		stops = nil // the constraint decides where the output ends
	}
	seq := &sequence{
		req:       req,
		h:         newHandle(ctx),
		sampler:   newSampler(req.Sampling, seed),
		pen:       newPenalties(req.Sampling, req.Prompt, req.Logprobs),
		text:      textState{stops: stops},
		slot:      -1,
		tokens:    req.Prompt,
		promptLen: len(req.Prompt),
		logitRow:  -1,
	}
	if req.Constraint != nil || req.EchoLogprobs {
		if err := s.contain("constraint", func() error { s.open(seq); return nil }); err != nil {
			seq.h.cancel()
			return nil, err
		}
	}
	need := len(req.Prompt) + req.MaxTokens
	s.mu.Lock()
	now := s.now()
	if s.closing {
		s.mu.Unlock()
		seq.h.cancel()
		s.observe(admission.Decision{Outcome: admission.OutcomeRejected, Reason: admission.ReasonClosed, Priority: req.Priority})
		return nil, ErrClosed
	}
	d := s.adm.Decide(need, s.loadLocked(), gpu, gpuOK, now)
	d.Priority = req.Priority
	var victim *sequence
	if d.Reason == admission.ReasonQueueFull {
		if victim = s.evictLocked(req.Priority); victim != nil {
			d.Outcome, d.Reason = admission.OutcomeQueued, admission.ReasonSlotsBusy
		}
	}
	if d.Outcome == admission.OutcomeRejected {
		err := &admission.OverloadError{Reason: d.Reason, RetryAfter: s.retryAfterLocked(d.Reason, need, now)}
		s.mu.Unlock()
		seq.h.cancel()
		s.observe(d)
		return nil, err
	}
	seq.adm = admissionState{queuedAt: now.Add(-max(req.PriorWait, 0)), reserve: need}
	seq.h.track(s.now, func(c Chunk, first time.Time) { s.released(seq, c, first) })
	s.reserved += need
	s.enqueueLocked(seq)
	s.mu.Unlock()
	s.observe(d)
	if victim != nil {
		s.drop([]*sequence{victim}, admission.ReasonPreempted, now)
	}
	s.signal()
	return seq.h, nil
}

// check validates a request before it can reach the engine.
func (s *Scheduler) check(req *Request) error {
	n := len(req.Prompt)
	switch {
	case n == 0:
		return &RequestError{Field: "prompt", Msg: "must hold at least one token"}
	case n >= s.cfg.CtxPerSlot:
		return &RequestError{Field: "prompt", Msg: fmt.Sprintf("%d tokens leave no room in a context of %d", n, s.cfg.CtxPerSlot)}
	case req.MaxTokens < 0:
		return &RequestError{Field: "max_tokens", Msg: "must not be negative"}
	case req.MaxTokens > s.cfg.CtxPerSlot-n: // compared, not added: no overflow
		return &RequestError{Field: "max_tokens", Msg: fmt.Sprintf("prompt (%d) plus max_tokens (%d) exceeds the context of %d", n, req.MaxTokens, s.cfg.CtxPerSlot)}
	}
	if err := checkLogprobs(req); err != nil {
		return err
	}
	if req.MaxTokens == 0 && !req.ScoreOnly {
		req.MaxTokens = s.cfg.CtxPerSlot - n
	}
	if c := req.Constraint; c != nil && req.MaxTokens < c.MinTokens() {
		return &RequestError{Field: "max_tokens", Msg: fmt.Sprintf("%d is too few for a complete constrained output, which needs up to %d", req.MaxTokens, c.MinTokens())}
	}
	vocab := int32(s.vocab.Size())
	for i, t := range req.Prompt {
		if t < 0 || t >= vocab {
			return &RequestError{Field: "prompt", Msg: fmt.Sprintf("token %d at %d is outside the vocabulary of %d", t, i, vocab)}
		}
	}
	p := req.Sampling
	switch {
	case p.Temperature < 0:
		return &RequestError{Field: "temperature", Msg: "must not be negative"}
	case p.TopP < 0 || p.TopP > 1:
		return &RequestError{Field: "top_p", Msg: "must be in [0, 1]"}
	case p.TopK < 0:
		return &RequestError{Field: "top_k", Msg: "must not be negative"}
	}
	if err := p.checkPenalties(int(vocab)); err != nil {
		return err
	}
	for _, st := range req.Stop {
		if st == "" {
			return &RequestError{Field: "stop", Msg: "stop strings must not be empty"}
		}
	}
	return nil
}

// Stats returns the current load.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Slots: s.cfg.Slots, Running: s.running, Waiting: len(s.queue), Steps: s.steps,
		QueueSize: s.cfg.QueueSize, ReservedTokens: s.reserved, RunningReservedTokens: s.runningReserved,
		CapacityTokens: s.cfg.Slots * s.cfg.CtxPerSlot, DrainRate: s.drain.rates(s.now()).Requests,
		IdleResidentTokens: s.idleResident,
		Host:               s.hostStats,
	}
}

// Close stops accepting requests, lets queued and running ones finish until
// ctx ends, ends the rest with FinishShutdown, and stops the loop.
// Idempotent; later calls wait for the same end.
func (s *Scheduler) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.signal()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.quitOnce.Do(func() { close(s.quit) })
		<-s.done // the loop ends within one engine step of quit
		return ctx.Err()
	}
}

func (s *Scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
