package process

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// slot is one partition of a worker: its part (replaced when reopened
// after a failure), the channel that lets its fetch goroutine fetch again,
// and the Disown calls waiting for it to go.
type slot struct {
	pt      *part
	again   chan struct{}
	cancel  context.CancelFunc
	leaving []chan error
	// reopen is set when the partition is owned again under a new epoch
	// while its slot still runs: its memory and consumer predate whatever
	// happened while it was not owned (another owner's commits, a
	// snapshot restored into its range), so its next batch is not applied
	// and the part is opened again from the store.
	reopen bool
	// reopening: the part is being opened again in the background
	// (reopenInBackground, stopped early by stopReopen); the slot does
	// not fetch meanwhile.
	reopening  bool
	stopReopen context.CancelFunc
	// next is an Own that came while the slot was leaving: handled once
	// the slot is gone (a fresh open).
	next *command
}

// worker is the single writer of the partitions it owns (partition p
// belongs to worker p % workers). Each partition fetches in its own
// goroutine (a fetch waits up to fetch_wait for a full batch, so fetching
// one partition after another would leave the worker idle for fetch_wait
// per partition); the worker applies the fetched batches one round at a
// time, and a partition fetches again only once its batch is committed.
// Between rounds it takes Own and Disown commands.
type worker struct {
	p     *Processor
	ready chan fetched
	slots map[int]*slot
	fctx  context.Context // parent of the fetch goroutines
	wg    sync.WaitGroup
	// opening is each partition an Own is opening in the background
	// (openInBackground); opened receives the outcomes.
	opening  map[int]*opening
	opened   chan *opening
	reopened chan reopened
}

// reopened is the outcome of a slot's reopen.
type reopened struct {
	s   *slot
	pt  *part
	err error
}

// errDisownedWhileOpening answers an Own whose partition was disowned
// before its open ended (the opened part is dropped).
var errDisownedWhileOpening = errors.New("process: partition disowned while it was opening")

// opening is an Own's open in progress and what waits for its end.
type opening struct {
	c   command
	pt  *part
	err error
	// disowned: a Disown came meanwhile (answered once the open ended,
	// the part dropped); next: an Own of a later epoch, handled then.
	disowned []chan error
	next     *command
}

// fetched is one fetch of a slot, or done once its fetcher stopped.
type fetched struct {
	s    *slot
	msgs []*event.Message
	at   time.Time // when the fetch began
	err  error
	done bool
	// backlog is the consumer's pending count, polled by the fetch
	// goroutine every lagPollEvery (polled false: not this time).
	backlog uint64
	polled  bool
}

// runWorker owns static (every partition of the worker when Deps.Dynamic
// is false) and then serves commands and rounds until Shutdown (its
// partitions report done) or hard cancellation.
func (p *Processor) runWorker(ctx context.Context, cmds <-chan command, static []int) error {
	fctx, cancel := context.WithCancel(ctx)
	w := &worker{p: p, ready: make(chan fetched), slots: map[int]*slot{}, fctx: fctx,
		opening: map[int]*opening{}, opened: make(chan *opening), reopened: make(chan reopened)}
	defer func() { cancel(); w.wg.Wait() }()
	for _, id := range static {
		if pt, _ := p.openRetrying(ctx, id, Ownership{}); pt != nil {
			w.add(pt)
		}
	}
	for ctx.Err() == nil {
		if w.settle(cmds) {
			continue
		}
		var stop <-chan struct{}
		if len(w.slots) == 0 && len(w.opening) == 0 {
			stop = p.stopping // with partitions, Shutdown ends them first
		}
		select {
		case r := <-w.ready:
			w.round(ctx, r, cmds)
		case c := <-cmds:
			w.command(c)
		case o := <-w.opened:
			w.openEnded(o)
		case r := <-w.reopened:
			w.reopenEnded(r)
		case <-stop:
			return nil
		case <-ctx.Done():
		}
	}
	return nil // abandoned: JetStream redelivers
}

// settle handles one command or open outcome already waiting, if any,
// and says whether it did: these go before the next round. A select
// among them and ready batches picks at random, and while JetStream
// elects consumer leaders after a crash each round can take its whole
// ack budget, so a takeover's finished open waited several rounds
// (7.6 s in TestCrashHandovers) before its partition was consumed.
func (w *worker) settle(cmds <-chan command) bool {
	select {
	case o := <-w.opened:
		w.openEnded(o)
	case r := <-w.reopened:
		w.reopenEnded(r)
	case c := <-cmds:
		w.command(c)
	default:
		return false
	}
	return true
}

func (w *worker) add(pt *part) {
	ctx, cancel := context.WithCancel(w.fctx)
	s := &slot{pt: pt, again: make(chan struct{}, 1), cancel: cancel}
	s.again <- struct{}{}
	w.slots[pt.id] = s
	w.p.setOwned(pt.id, &pt.own)
	w.wg.Go(func() { w.p.fetchLoop(ctx, s, w.ready) })
}

// remove stops a slot whose fetch is not in flight and answers the
// Disown calls waiting for it.
func (w *worker) remove(s *slot) {
	s.cancel()
	closeFetcher(s.pt.f)
	delete(w.slots, s.pt.id)
	if len(s.leaving) > 0 {
		// Disowned (a partition stopped by Shutdown stays owned for the
		// relay's last pass).
		w.p.setOwned(s.pt.id, nil)
	}
	for _, done := range s.leaving {
		done <- nil
	}
	if c := s.next; c != nil {
		s.next = nil
		w.command(*c)
	}
}

// command opens a partition to own (retrying until its context ends) or
// marks one to leave after its in-flight batch.
func (w *worker) command(c command) {
	s := w.slots[c.id]
	if o := w.opening[c.id]; o != nil {
		if c.own == nil {
			o.disowned = append(o.disowned, c.done)
		} else {
			o.next = &c
		}
		return
	}
	switch {
	case c.own == nil && s == nil:
		c.done <- nil
	case c.own == nil:
		s.leaving = append(s.leaving, c.done)
		if s.reopening {
			s.stopReopen() // leaving anyway: not worth reopening
		}
	case s != nil && len(s.leaving) > 0:
		// Owned again after a Disown the slot has not finished: once it
		// is gone, opened afresh (taken as "owned again", the slot's
		// removal would drop the new ownership).
		s.next = &c
	case w.p.stopped():
		c.done <- ErrNotRunning
	case s != nil:
		s.pt.own = *c.own // owned again under a new epoch
		s.reopen = true
		w.p.setOwned(c.id, c.own)
		c.done <- nil
	default:
		w.openInBackground(c)
	}
}

// openInBackground opens a partition to own in its own goroutine: an open
// waits on JetStream (stream state, consumer creation; seconds while it
// elects leaders after a node's crash), and meanwhile the worker goes on
// committing its other partitions and taking the other commands (a node
// that takes over several partitions opens them side by side, not one
// after the other). The outcome comes back to the worker (openEnded).
func (w *worker) openInBackground(c command) {
	o := &opening{c: c}
	w.opening[c.id] = o
	ctx, cancel := context.WithCancel(c.ctx)
	stop := context.AfterFunc(w.fctx, cancel) // the worker ends: give up
	w.wg.Go(func() {
		defer cancel()
		defer stop()
		o.pt, o.err = w.p.openRetrying(ctx, c.id, *c.own)
		select {
		case w.opened <- o:
		case <-w.fctx.Done():
			c.done <- ErrNotRunning
			for _, d := range o.disowned {
				d <- nil
			}
		}
	})
}

// openEnded takes an open's outcome: the part joins the worker's slots
// unless its Own gave up (its context ended) or a Disown came meanwhile;
// then the commands that waited for it are handled.
func (w *worker) openEnded(o *opening) {
	delete(w.opening, o.c.id)
	keep := o.pt != nil && o.c.ctx.Err() == nil && len(o.disowned) == 0 && !w.p.stopped()
	if keep {
		w.add(o.pt)
	} else if o.pt != nil {
		closeFetcher(o.pt.f)
	}
	switch {
	case keep || o.err != nil:
		o.c.done <- o.err
	case o.pt == nil:
		o.c.done <- nil // refused (the stream is behind its checkpoint)
	case w.p.stopped():
		o.c.done <- ErrNotRunning
	case o.c.ctx.Err() != nil:
		o.c.done <- o.c.ctx.Err()
	default:
		o.c.done <- errDisownedWhileOpening
	}
	for _, d := range o.disowned {
		d <- nil
	}
	if o.next != nil {
		w.command(*o.next)
	}
}

// round commits the fetched batch r and every other one ready with it
// (group commit: one transaction, one fsync), then lets the partitions
// fetch again, reopens failed ones and drops the ones leaving.
func (w *worker) round(ctx context.Context, r fetched, cmds <-chan command) {
	p := w.p
	round := []fetched{r}
drain:
	for len(round) < len(w.slots) {
		select {
		case r := <-w.ready:
			round = append(round, r)
		default:
			break drain
		}
	}
	var active, apply []fetched
	for _, r := range round {
		switch {
		case r.done:
			w.remove(r.s)
		case r.s.reopen:
			active = append(active, r) // not applied: the part is stale
		default:
			active = append(active, r)
			apply = append(apply, r)
		}
	}
	began := time.Now()
	failed := p.handle(ctx, apply)
	if ctx.Err() != nil {
		return
	}
	if p.deps.Pacer != nil {
		p.deps.Pacer.Pace(ctx, time.Since(began))
	}
	w.pending(cmds)
	failed = slices.DeleteFunc(failed, func(s *slot) bool { return len(s.leaving) > 0 })
	pause := make(map[*slot]bool, len(failed)) // a failure, not an ownership change
	for _, s := range failed {
		pause[s] = true
	}
	for _, r := range active { // stale, or owned again during this round
		if r.s.reopen && !slices.Contains(failed, r.s) && len(r.s.leaving) == 0 {
			failed = append(failed, r.s)
		}
	}
	for _, s := range failed {
		if len(s.leaving) > 0 {
			continue // leaving anyway: not worth reopening
		}
		// Redelivery order after a failure is not guaranteed (a newer
		// message may arrive before the nak'ed ones and move the
		// checkpoint past them), and the partition's memory holds
		// uncommitted changes: reopen it from its committed checkpoint,
		// retrying until it opens. Going on with the old part after a
		// failed reopen (EVENTS without a leader after a kill -9) kept
		// its consumer and its memory: the partition stalled, or could
		// skip the nak'ed messages.
		w.reopenInBackground(ctx, s, pause[s])
	}
	for _, r := range active {
		if len(r.s.leaving) > 0 {
			w.remove(r.s)
			continue
		}
		if w.slots[r.s.pt.id] != r.s || r.s.reopening {
			continue // removed, or fetching again once reopened
		}
		r.s.again <- struct{}{}
	}
}

// reopenInBackground opens slot s's partition again from the store, in
// its own goroutine (after a second's pause when a failure caused it),
// like an Own's open: the worker goes on with its other partitions and
// commands while JetStream answers slowly. The slot does not fetch until
// the outcome comes back (reopenEnded).
func (w *worker) reopenInBackground(ctx context.Context, s *slot, pause bool) {
	if s.reopen {
		w.p.log.Info("partition owned again; reopening it from the store", "partition", s.pt.id, "epoch", s.pt.own.Epoch)
	}
	s.reopen, s.reopening = false, true
	id, own := s.pt.id, s.pt.own
	ctx, cancel := context.WithCancel(ctx)
	s.stopReopen = cancel
	stop := context.AfterFunc(w.fctx, cancel)
	w.wg.Go(func() {
		defer cancel()
		defer stop()
		if pause {
			w.p.sleep(ctx, time.Second)
		}
		pt, err := w.p.openRetrying(ctx, id, own)
		select {
		case w.reopened <- reopened{s, pt, err}:
		case <-w.fctx.Done():
		}
	})
}

// reopenEnded takes a reopen's outcome: the slot fetches again with the
// new part, or ends (leaving, stopping, refused); owned again under a
// newer epoch meanwhile, it is reopened once more.
func (w *worker) reopenEnded(r reopened) {
	s := r.s
	s.reopening = false
	if r.pt != nil && (w.slots[s.pt.id] != s || len(s.leaving) > 0) {
		closeFetcher(r.pt.f) // not taken
	}
	switch {
	case w.slots[s.pt.id] != s:
		// removed meanwhile
	case len(s.leaving) > 0:
		w.remove(s)
	case s.reopen && (r.pt != nil || r.err == nil):
		// Owned again while it reopened: again, under the new epoch.
		if r.pt != nil {
			own := s.pt.own
			closeFetcher(s.pt.f)
			s.pt = r.pt
			s.pt.own = own
		}
		w.reopenInBackground(w.fctx, s, false)
	case r.pt != nil:
		closeFetcher(s.pt.f)
		s.pt = r.pt
		s.again <- struct{}{}
	case r.err != nil:
		// Stopping before it reopened: the partition stops here and its
		// unacknowledged messages are redelivered.
		w.p.log.Warn("partition not reopened before the end", "partition", s.pt.id, "err", r.err)
		w.remove(s)
	default:
		// Refused (the stream is behind its checkpoint): reported by
		// Healthy, not consumed.
		w.remove(s)
	}
}

// pending takes the commands already waiting, so a Disown arriving
// during a round (or its failure pause) takes effect at its end.
func (w *worker) pending(cmds <-chan command) {
	for {
		select {
		case c := <-cmds:
			w.command(c)
		default:
			return
		}
	}
}

// fetchLoop fetches s each time the worker says again; the worker owns
// the part between handing it out and saying again.
// Its goroutine also polls the consumer's backlog for the lag gauge: a
// round trip that takes seconds while JetStream elects a leader, which on
// the worker held up every partition of the worker.
func (p *Processor) fetchLoop(ctx context.Context, s *slot, ready chan<- fetched) {
	var polled time.Time
	for {
		select {
		case <-s.again:
		case <-ctx.Done():
			return
		}
		r := fetched{s: s, done: p.stopped(), at: time.Now()}
		if pd, ok := s.pt.f.(pender); ok && !r.done && time.Since(polled) >= lagPollEvery {
			polled = time.Now()
			pctx, cancel := context.WithTimeout(ctx, lagPollTimeout)
			pending, _, err := pd.Pending(pctx)
			cancel()
			r.backlog, r.polled = pending, err == nil
		}
		if !r.done {
			r.msgs, r.err = s.pt.f.Fetch(ctx, p.cfg.FetchBatch, p.cfg.FetchWait)
		}
		select {
		case ready <- r:
		case <-ctx.Done():
			return
		}
		if r.done {
			return
		}
	}
}

// openRetrying opens a partition, retrying until ctx ends or Shutdown: a
// transient failure (stream info, consumer creation) must not leave a
// partition unconsumed. It returns nil for a refused partition.
func (p *Processor) openRetrying(ctx context.Context, id int, o Ownership) (*part, error) {
	for attempt := 0; ; attempt++ {
		pt, err := p.openPartition(ctx, id, o, openAttemptTimeout(attempt))
		if err == nil {
			if pt != nil && p.deps.Dynamic {
				// Where a handover or a reopen resumes the partition
				// (cluster mode: one line per open).
				p.log.Info("partition opened", "partition", id, "epoch", o.Epoch, "from_seq", pt.ps.LastSeq+1)
			}
			return pt, nil
		}
		if ctx.Err() != nil || p.stopped() {
			return nil, err
		}
		p.log.Error("opening partition; retrying", "partition", id, "attempt", attempt+1, "err", err)
		p.sleep(ctx, openRetryPause)
	}
}

// openRetryPause is the pause between two attempts to open a partition.
const openRetryPause = 500 * time.Millisecond

// openAttemptTimeout bounds the stream calls of attempt n (from 0) to open
// a partition: 2 s, then twice as long each time, up to 16 s. Right after a
// kill -9 the first consumer creation often hangs on a meta leader that is
// gone (the JetStream client's own limit is 5 s) while a second one, sent
// to the new leader, succeeds at once; longer attempts later keep a slow
// but working cluster from timing out every attempt.
func openAttemptTimeout(n int) time.Duration {
	return min(2*time.Second<<min(n, 3), 16*time.Second)
}
