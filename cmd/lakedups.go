package cmd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/process"
	"github.com/clickpipe/clickpipe/state"
)

// lakeDups carries the duplicate lists of applied events messages from
// each partition's owner to the events lake writer, which may run on
// another node (cluster.partition_ownership; docs/cluster.md): the owner
// publishes a state.DupsRecord per partition and commit to stream DUPS
// (subject clickpipe.dups.<p>, replicated like the other streams), and the
// lake writer reads them forward from about the time of the message it
// waits for.
type lakeDups struct {
	js     jetstream.JetStream
	dups   jetstream.Stream
	events jetstream.Stream
	log    *slog.Logger

	mu    sync.Mutex
	parts map[int]*dupsCache
}

var (
	_ process.DupsPublisher = (*lakeDups)(nil)
	_ archive.Deduper       = (*lakeDups)(nil)
)

// dupsClockMargin is how far before an events message's stream time the
// reader starts looking for its record: the record is written after the
// message, but by another stream leader's clock.
const dupsClockMargin = time.Minute

// openLakeDups creates stream DUPS or brings its limits to the
// configuration (buffer.EnsureDups), retrying until ctx ends: a cluster's
// peers race to create it at start-up.
func openLakeDups(ctx context.Context, buf *buffer.Buffer, log *slog.Logger) (*lakeDups, error) {
	js := buf.JetStream()
	for {
		// Attempts are bounded: the meta leader may leave a concurrent
		// duplicate create unanswered.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var ev jetstream.Stream
		ensured := buf.EnsureDups(actx)
		s, err := js.Stream(actx, buffer.DupsStream)
		if ensured != nil && err == nil {
			// It exists but its limits could not be set (during a rolling
			// upgrade a peer of the previous version may have no room
			// reserved for them): use it as it is; the next start tries again.
			log.Warn("stream DUPS kept as it is", "err", ensured)
		}
		if err == nil {
			ev, err = js.Stream(actx, buffer.EventsStream)
		}
		cancel()
		if err == nil {
			return &lakeDups{js: js, dups: s, events: ev, log: log, parts: map[int]*dupsCache{}}, nil
		}
		log.Info("waiting for stream", "stream", buffer.DupsStream, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("opening stream %s: %w", buffer.DupsStream, err)
		case <-time.After(time.Duration(250+rand.IntN(500)) * time.Millisecond):
		}
	}
}

// PublishDups stores rec; its Nats-Msg-Id makes a retry within two
// minutes a no-op, and a later copy carries the same content.
func (d *lakeDups) PublishDups(ctx context.Context, rec state.DupsRecord) error {
	body, err := state.EncodeDupsRecord(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	id := fmt.Sprintf("%d/%d-%d", rec.Partition, rec.After, rec.Through)
	_, err = d.js.Publish(ctx, buffer.DupsSubject(rec.Partition), body, jetstream.WithMsgID(id))
	return err
}

// LastDups is the Through of partition p's last record.
func (d *lakeDups) LastDups(ctx context.Context, p int) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := d.dups.GetLastMsgForSubject(ctx, buffer.DupsSubject(p))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the last duplicate lists of partition %d: %w", p, err)
	}
	rec, err := state.DecodeDupsRecord(m.Data)
	if err != nil {
		return 0, err
	}
	return rec.Through, nil
}

// Duplicates answers the lake writer from the records published so far:
// applied is false until a record covers seq.
func (d *lakeDups) Duplicates(p int, seq uint64) ([]uint32, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.parts[p]
	if c == nil || seq <= c.floor {
		c = &dupsCache{lines: map[uint64][]uint32{}}
		d.parts[p] = c
	}
	if !c.covers(seq) {
		if err := d.read(ctx, p, c, seq); err != nil {
			return nil, false, err
		}
		if !c.covers(seq) {
			return nil, false, nil
		}
	}
	c.prune(seq)
	return c.lines[seq], true, nil
}

// read reads partition p's records forward until one covers seq or none
// is left.
func (d *lakeDups) read(ctx context.Context, p int, c *dupsCache, seq uint64) error {
	if c.next == 0 {
		next, err := d.start(ctx, seq)
		if err != nil {
			return err
		}
		c.next = next
	}
	for !c.covers(seq) {
		m, err := d.dups.GetMsg(ctx, c.next, jetstream.WithGetMsgSubject(buffer.DupsSubject(p)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading duplicate lists of partition %d: %w", p, err)
		}
		c.next = m.Sequence + 1
		rec, err := state.DecodeDupsRecord(m.Data)
		if err != nil {
			d.log.Warn("skipping an undecodable duplicate lists record", "seq", m.Sequence, "err", err)
			continue
		}
		c.add(rec)
	}
	return nil
}

// start finds the first DUPS sequence stored at or after the time of the
// events message at seq, less dupsClockMargin (a binary search over the
// stream's times; the stream start when the message is gone).
func (d *lakeDups) start(ctx context.Context, seq uint64) (uint64, error) {
	info, err := d.dups.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading stream %s: %w", buffer.DupsStream, err)
	}
	lo, hi := max(info.State.FirstSeq, 1), info.State.LastSeq+1
	ev, err := d.events.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return lo, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading events message %d: %w", seq, err)
	}
	from := ev.Time.Add(-dupsClockMargin)
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := d.dups.GetMsg(ctx, mid)
		if err != nil {
			return 0, fmt.Errorf("searching stream %s: %w", buffer.DupsStream, err)
		}
		if m.Time.Before(from) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// dupsCache is what the reader knows of one partition: the spans of
// sequences covered by records read, as (after, through] pairs merged
// and ascending, and the duplicate lines inside them above floor.
type dupsCache struct {
	next  uint64 // DUPS sequence to read next (0: not started)
	spans [][2]uint64
	lines map[uint64][]uint32
	floor uint64 // lines at or below floor were dropped
}

func (c *dupsCache) covers(seq uint64) bool {
	for _, s := range c.spans {
		if s[0] < seq && seq <= s[1] {
			return true
		}
	}
	return false
}

// add merges a record (records of different owners overlap; their
// content agrees, being a function of the stream).
func (c *dupsCache) add(rec state.DupsRecord) {
	if rec.Through <= c.floor {
		return
	}
	for s, l := range rec.Lines {
		if s > c.floor && s > rec.After && s <= rec.Through {
			c.lines[s] = l
		}
	}
	span := [2]uint64{max(rec.After, c.floor), rec.Through}
	var merged [][2]uint64
	for _, s := range c.spans {
		if s[1] < span[0] || span[1] < s[0] {
			merged = append(merged, s)
			continue
		}
		span = [2]uint64{min(s[0], span[0]), max(s[1], span[1])}
	}
	merged = append(merged, span)
	slices.SortFunc(merged, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	c.spans = merged
}

// prune drops what lies below seq: the lake writer asks in ascending
// order per partition (a retry asks the same seq again; an earlier one
// starts the partition over).
func (c *dupsCache) prune(seq uint64) {
	if seq <= c.floor+1 {
		return
	}
	c.floor = seq - 1
	for s := range c.lines {
		if s <= c.floor {
			delete(c.lines, s)
		}
	}
	kept := c.spans[:0]
	for _, s := range c.spans {
		if s[1] > c.floor {
			kept = append(kept, [2]uint64{max(s[0], c.floor), s[1]})
		}
	}
	c.spans = kept
}
