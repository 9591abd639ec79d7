package ingest

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// batch is one group-commit message being filled or published: the events
// of one partition from any number of concurrent requests.
type batch struct {
	p        int
	enc      lineBuffer
	meta     []liveMeta
	deadline time.Time
	// done is closed once the publish finished; err is its outcome and
	// seq the stream sequence of the stored message.
	done chan struct{}
	err  error
	seq  uint64
}

// lineBuffer frames lines exactly as event.Encoder does (joined by '\n'),
// over a slice whose capacity the committer chooses up front, so that
// filling a group-commit message does not regrow and copy it again and again.
type lineBuffer struct {
	buf   []byte
	count int
}

// AppendEncoded adds one encoded event.
func (l *lineBuffer) AppendEncoded(line []byte) {
	if l.count > 0 {
		l.buf = append(l.buf, '\n')
	}
	l.buf = append(l.buf, line...)
	l.count++
}

// Bytes is the message body.
func (l *lineBuffer) Bytes() []byte { return l.buf }

// Len is the body size in bytes.
func (l *lineBuffer) Len() int { return len(l.buf) }

// Count is the number of events.
func (l *lineBuffer) Count() int { return l.count }

// minBatchCap is the smallest capacity a new group-commit message starts with.
const minBatchCap = 16 << 10

// liveMeta is what the live-events filter needs about one line.
type liveMeta struct{ source, userID string }

// committer packs events into per-partition batches bounded by bytes and
// linger, and publishes sealed batches with a fixed set of workers. A
// partition is always published by the same worker, so its messages enter
// the stream in the order they were sealed.
type committer struct {
	maxBytes int
	linger   time.Duration
	now      func() time.Time

	mu   sync.Mutex
	open []*batch
	// size is each partition's latest message size, the capacity hint
	// for its next one.
	size    []int
	stopped bool
	senders sync.WaitGroup // seals in flight to a queue
	kick    chan struct{}
	stopCh  chan struct{}
	once    sync.Once
	queues  []chan *batch
}

func newCommitter(partitions, workers, maxBytes int, linger time.Duration, now func() time.Time) *committer {
	c := &committer{
		maxBytes: maxBytes, linger: linger, now: now,
		open: make([]*batch, partitions), size: make([]int, partitions), kick: make(chan struct{}, 1), stopCh: make(chan struct{}),
	}
	for range min(workers, partitions) {
		c.queues = append(c.queues, make(chan *batch, 4))
	}
	return c
}

// add appends one encoded event to partition p's open batch and returns
// the batch the caller must wait for.
func (c *committer) add(p int, line []byte, m liveMeta) (*batch, error) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil, ErrStopped
	}
	var sealed []*batch
	b := c.open[p]
	if b != nil && b.enc.Len()+1+len(line) > c.maxBytes {
		sealed = append(sealed, b)
		b = nil
	}
	if b == nil {
		b = &batch{p: p, deadline: c.now().Add(c.linger), done: make(chan struct{})}
		b.enc.buf = make([]byte, 0, min(max(c.size[p]+c.size[p]/4, minBatchCap), c.maxBytes))
		c.open[p] = b
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	b.enc.AppendEncoded(line)
	b.meta = append(b.meta, m)
	c.size[p] = b.enc.Len()
	if b.enc.Len() >= c.maxBytes {
		sealed = append(sealed, b)
		c.open[p] = nil
	}
	c.senders.Add(len(sealed))
	c.mu.Unlock()
	for _, s := range sealed {
		c.enqueue(s)
	}
	return b, nil
}

// enqueue hands a sealed batch to its partition's worker.
func (c *committer) enqueue(b *batch) {
	defer c.senders.Done()
	c.queues[b.p%len(c.queues)] <- b
}

// linger seals batches whose deadline passed, until stop.
func (c *committer) lingerLoop() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := c.sealExpired()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(c.now()), 0)
		}
		t.Reset(wait)
		select {
		case <-c.stopCh:
			return
		case <-c.kick:
		case <-t.C:
		}
	}
}

// sealExpired enqueues expired batches and returns the earliest remaining
// deadline (zero when none).
func (c *committer) sealExpired() time.Time {
	c.mu.Lock()
	now := c.now()
	var expired []*batch
	var next time.Time
	for p, b := range c.open {
		switch {
		case b == nil:
		case !b.deadline.After(now):
			expired = append(expired, b)
			c.open[p] = nil
			c.senders.Add(1)
		case next.IsZero() || b.deadline.Before(next):
			next = b.deadline
		}
	}
	c.mu.Unlock()
	for _, b := range expired {
		c.enqueue(b)
	}
	return next
}

// hurry drops the linger to zero and seals what is open, so requests
// still in flight during shutdown are answered without waiting.
func (c *committer) hurry() {
	c.mu.Lock()
	c.linger = 0
	for _, b := range c.open {
		if b != nil {
			b.deadline = time.Time{}
		}
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// stop refuses new events, seals every open batch and closes the queues
// once every sealed batch is queued. Idempotent.
func (c *committer) stop() {
	c.once.Do(func() {
		c.mu.Lock()
		c.stopped = true
		var rest []*batch
		for p, b := range c.open {
			if b != nil {
				rest = append(rest, b)
				c.open[p] = nil
				c.senders.Add(1)
			}
		}
		c.mu.Unlock()
		close(c.stopCh)
		for _, b := range rest {
			c.enqueue(b)
		}
		c.senders.Wait()
		for _, q := range c.queues {
			close(q)
		}
	})
}

// publishFunc publishes one sealed batch.
type publishFunc func(ctx context.Context, b *batch) error

// work publishes the batches of one queue until it is closed.
func (c *committer) work(q chan *batch, publish publishFunc, hard context.Context, timeout time.Duration) {
	for b := range q {
		ctx, cancel := context.WithTimeout(hard, timeout)
		b.err = publish(ctx, b)
		cancel()
		close(b.done)
	}
}

// batchHeader is the header of a group-commit message.
func batchHeader(n int) map[string]string {
	return map[string]string{event.HeaderCodec: event.CodecNDJSON, event.HeaderCount: strconv.Itoa(n)}
}
