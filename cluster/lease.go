package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// lease is one named lease as this node sees it.
type lease struct {
	name string
	work Work
	prep func(context.Context) // may be nil (Manager.Prepare)
	m    *Manager

	// casMu serialises this node's writes of the lease (renewals from the
	// ticker and from Holding.Check); mu guards the fields below.
	casMu sync.Mutex
	mu    sync.Mutex
	held  *Holding
	rev   uint64    // revision of this node's latest write while held
	sent  time.Time // when the write that produced rev was sent
	stop  context.CancelFunc
	done  chan struct{} // closed when the work returned; nil if none ran
	// What a non-holder saw: a revision and when it first saw it (from a
	// read or the watch), and a timer that kicks a round when a takeover
	// becomes possible with nothing newer seen.
	seenRev    uint64
	seenAt     time.Time // no earlier than when seenRev's write was sent
	seenHolder string    // the holder named by seenRev ("" if unreadable)
	// origin is the earliest instant on this node's clock that the writes
	// of one holder incarnation (originOf: holder and nonce) put at their
	// clock's zero (seen at now, stamped Sent: now − Sent), over the
	// writes seen since originAt (at most originWindow ttls ago).
	originOf string
	origin   time.Time
	originAt time.Time
	wake     *time.Timer
	// suspectWake runs suspect once seenRev has been the latest for
	// suspectAfter (only with a prep).
	suspectWake *time.Timer
	backoff     time.Time // no contending before this (after the work failed)
	// preparedRev is the revision of a silent holder's lease that prep
	// last ran for (once per revision).
	preparedRev uint64
	// A lease taken over from a silent holder is not handed back to it
	// while its membership may still be listed (until avoidUntil).
	avoid      string
	avoidUntil time.Time
}

// Holding is a held lease, handed to its Work.
type Holding struct {
	// Name is the lease name.
	Name string
	// Epoch is the KV revision of the write that acquired the lease; it
	// grows with every change of holder.
	Epoch    uint64
	l        *lease
	graceful atomic.Bool
}

// Released tells a stopped work whether it was stopped by a graceful
// release (handover or shutdown: the lease stayed valid until the work
// returned) rather than by losing the lease.
func (h *Holding) Released() bool { return h.graceful.Load() }

// Check proves, at a linearizable point, that this node still holds the
// lease at this epoch: it renews it by compare-and-swap on the revision of
// its previous write. A side effect that must happen at most once per
// owner calls it first and gives up on an error (ErrLost: for good).
func (h *Holding) Check(ctx context.Context) error {
	l := h.l
	l.casMu.Lock()
	defer l.casMu.Unlock()
	l.mu.Lock()
	if l.held != h || time.Since(l.sent) > l.m.cfg.TTL*2/3 {
		l.mu.Unlock()
		return fmt.Errorf("%w: %s epoch %d", ErrLost, h.Name, h.Epoch)
	}
	rev := l.rev
	l.mu.Unlock()
	return l.renew(ctx, h, rev)
}

// Valid is the local half of Check, without a round trip: the lease is
// still this holding's and its last renewal was sent less than two thirds
// of the ttl ago (when the work is stopped anyway). It suits commits that
// stay on this node; a side effect that leaves it calls Check.
func (h *Holding) Valid() bool {
	l := h.l
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held == h && time.Since(l.sent) <= l.m.cfg.TTL*2/3
}

// maintain keeps a held lease: it gives the work up once two thirds of
// the ttl passed without a renewal, and renews every sixth of the ttl. It
// runs on its own ticker so that slow reads elsewhere never delay a
// renewal.
func (l *lease) maintain(ctx context.Context) {
	l.mu.Lock()
	h, sent, rev := l.held, l.sent, l.rev
	l.mu.Unlock()
	switch {
	case h == nil:
	case time.Since(sent) > l.m.cfg.TTL*2/3:
		l.lose(h, "no renewal within two thirds of the ttl")
	case time.Since(sent) >= l.m.cfg.TTL/6:
		l.casMu.Lock()
		err := l.renew(ctx, h, rev)
		l.casMu.Unlock()
		if errors.Is(err, ErrLost) {
			l.lose(h, err.Error())
		} else if err != nil {
			l.m.metrics.event(l.name, "renew_failed")
			l.m.log.Warn("renewing lease", "lease", l.name, "epoch", h.Epoch, "err", err)
		}
	}
}

// place is one placement round for this lease: when held, release it if
// its work returned or keep (the placement over stable members) is
// another node; otherwise observe it and contend.
func (l *lease) place(ctx context.Context, live []memberRecord, keep string) {
	me := l.m.cfg.NodeName
	l.mu.Lock()
	h, done := l.held, l.done
	l.mu.Unlock()
	if h != nil {
		switch {
		case isClosed(done):
			l.m.log.Warn("lease work returned; releasing the lease", "lease", l.name, "epoch", h.Epoch)
			l.release(ctx)
			l.mu.Lock()
			l.backoff = time.Now().Add(l.m.cfg.TTL)
			l.mu.Unlock()
		case keep != "" && keep != me && !l.avoiding(keep):
			l.m.log.Info("lease placement moved; handing over", "lease", l.name, "to", keep, "epoch", h.Epoch)
			l.release(ctx)
		}
		return
	}
	if done != nil && !isClosed(done) {
		return // the previous work has not stopped yet
	}
	l.contend(ctx, live)
}

// contend observes the lease and acquires it when free and this node is
// the placement's choice among the live members, or when abandoned and
// this node is the choice among the live members other than the holder
// (which has not renewed for takeoverAfter, whatever its membership says).
func (l *lease) contend(parent context.Context, live []memberRecord) {
	ttl, me := l.m.cfg.TTL, l.m.cfg.NodeName
	ctx, cancel := context.WithTimeout(parent, ttl/3)
	defer cancel()
	e, err := l.m.get(ctx, l.m.kv, l.name)
	now := time.Now()
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if desired(l.name, live) != me || now.Before(l.backoff) {
			return
		}
		rev, err := l.m.kv.Create(ctx, l.name, l.record(0).encode())
		if err != nil {
			l.m.log.Debug("acquiring free lease", "lease", l.name, "err", err)
			return
		}
		l.acquired(parent, rev, now)
	case err != nil:
		l.m.log.Debug("reading lease", "lease", l.name, "err", err)
	default:
		rec, derr := decodeLease(e.Value())
		if seenAt := l.observe(e.Revision(), rec, now); now.Before(l.backoff) || now.Sub(seenAt) < takeoverAfter(ttl) {
			return
		}
		if derr == nil && desired(l.name, without(live, rec.Holder)) != me {
			return
		}
		rev, err := l.m.kv.Update(ctx, l.name, l.record(0).encode(), e.Revision())
		if err != nil {
			l.m.log.Debug("taking over abandoned lease", "lease", l.name, "err", err)
			if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				// Most often the bucket has no leader (its leader was the
				// silent holder's node): try again soon, not a round later.
				l.retrySoon()
			}
			return
		}
		l.m.log.Info("took over an abandoned lease", "lease", l.name, "previous", describe(e))
		if derr == nil {
			l.mu.Lock()
			l.avoid, l.avoidUntil = rec.Holder, now.Add(memberTTL*ttl)
			l.mu.Unlock()
		}
		l.acquired(parent, rev, now)
	}
}

// takeoverAfter is how long a contender must have seen a lease's revision
// unchanged before it may take the lease over: five sixths of the ttl. The
// holder stops its work two thirds of the ttl after it *sent* its last
// renewal (its commits check that instant exactly; the renewal ticker that
// stops the work runs every 24th of the ttl), and the contender counts from
// an instant no earlier than that sending (observe: when it saw the write,
// or earlier when the write's own clock stamp shows it was sent before);
// so at least a sixth of the ttl less a 24th, an eighth, separates the two
// (1.9 s at the default 15 s ttl), whatever the wall clocks say, as long
// as their rates roughly agree. Side effects
// that leave the node are fenced by compare-and-swap (Holding.Check) and
// need no margin at all.
func takeoverAfter(ttl time.Duration) time.Duration { return ttl * 5 / 6 }

// suspectAfter is how long a lease's revision must stay unchanged before
// the node next in placement prepares to take it over: a third of the
// ttl, two renewals missed (they come every sixth), half of the wait
// before the takeover itself.
func suspectAfter(ttl time.Duration) time.Duration { return ttl / 3 }

// suspect runs when revision rev of the lease has been the latest this
// node saw for suspectAfter: if the lease is another node's and this node
// is next in placement without it, the lease's prep runs (once per
// revision, in its own goroutine). It needs no read of the bucket, which
// is often without a leader at that moment (its leader may be the silent
// holder's node); a renewal this node missed only costs a needless
// preparation.
func (l *lease) suspect(rev uint64) {
	me := l.m.cfg.NodeName
	l.mu.Lock()
	holder, seenAt := l.seenHolder, l.seenAt
	skip := l.prep == nil || l.seenRev != rev || l.preparedRev == rev || l.held != nil || holder == "" || holder == me
	l.mu.Unlock()
	if skip || desired(l.name, without(l.m.liveView(), holder)) != me {
		return
	}
	l.mu.Lock()
	if l.preparedRev == rev {
		l.mu.Unlock()
		return
	}
	l.preparedRev = rev
	l.mu.Unlock()
	l.m.log.Info("lease holder silent; preparing to take over", "lease", l.name, "holder", holder,
		"silent", time.Since(seenAt).Round(time.Millisecond))
	l.m.metrics.event(l.name, "prepared")
	l.m.goPrep(l.prep)
}

// observe records that this node saw revision rev of the lease, whose
// record is rec, at now (through a read or the watch) and returns the
// instant the wait before a takeover counts from: no earlier than when
// the write was sent (sentBound). A new revision restarts the wait and
// arms a timer that kicks a round once the wait is over, so a crashed
// holder's lease is taken at that instant rather than at the next round.
func (l *lease) observe(rev uint64, rec leaseRecord, now time.Time) (seenAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rev != l.seenRev {
		// A write seen within a sixth of the ttl of its bound counts from
		// its sighting, as every write did before the bound existed: the
		// delivery delays of a loaded node (fsync stalls) then pad the
		// wait, as they always did. Only a write seen later than that (a
		// crashed holder's renewal committed by the bucket's next leader)
		// counts from its bound.
		from := l.sentBound(rec, now)
		if late := now.Sub(from); late > l.m.cfg.TTL/6 {
			l.m.log.Info("lease write seen late; the wait counts from its sending", "lease", l.name,
				"holder", rec.Holder, "late", late.Round(time.Millisecond))
		} else {
			from = now
		}
		l.seenRev, l.seenAt, l.seenHolder = rev, from, rec.Holder
		waited := now.Sub(from)
		if l.prep != nil {
			// The preparation counts from the sighting: it is only an
			// early start, and a needless one costs a restore.
			if l.suspectWake != nil {
				l.suspectWake.Stop()
			}
			l.suspectWake = time.AfterFunc(suspectAfter(l.m.cfg.TTL), func() { l.suspect(rev) })
		}
		after := takeoverAfter(l.m.cfg.TTL) + l.m.cfg.TTL/100 - waited
		if l.wake == nil {
			l.wake = time.AfterFunc(after, l.m.kickRound)
		} else {
			l.wake.Reset(after)
		}
	}
	return l.seenAt
}

// originWindow bounds, in ttls, how old the write may be that this node's
// estimate of a holder's clock origin comes from, so that clock rates
// drifting apart cannot add up (at 500 ppm, 10 ttls shift it by 0.5 % of
// a ttl; the margin is an eighth).
const originWindow = 10

// sentBound is an instant on this node's clock no earlier than when the
// write carrying rec, seen at now, was sent. Without a clock stamp it is
// now. With one it can be earlier: each write of the holder's incarnation
// seen at s with stamp x shows that the holder's clock origin lies at
// s − x or before, so the earliest such origin plus rec's stamp is still
// no earlier than rec's sending (clocks ticking at the same rate), and it
// is earlier than now when rec was delivered late: a renewal the leases
// bucket's new leader committed seconds after its old one (on the holder's
// crashed node) took it. Called with mu held.
func (l *lease) sentBound(rec leaseRecord, now time.Time) time.Time {
	if rec.Sent <= 0 || rec.Holder == "" {
		return now
	}
	of := rec.Holder + "/" + rec.Nonce
	origin := now.Add(-time.Duration(rec.Sent))
	if of != l.originOf || origin.Before(l.origin) || now.Sub(l.originAt) > originWindow*l.m.cfg.TTL {
		l.originOf, l.origin, l.originAt = of, origin, now
	}
	return l.origin.Add(time.Duration(rec.Sent))
}

// retrySoon kicks a round a 60th of the ttl from now (250 ms at the
// default): a takeover that was due failed for want of an answer.
func (l *lease) retrySoon() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake == nil {
		l.wake = time.AfterFunc(l.m.cfg.TTL/60, l.m.kickRound)
	} else {
		l.wake.Reset(l.m.cfg.TTL / 60)
	}
}

// avoiding is whether node is the silent holder this node took the lease
// from, whose membership entry may outlive it by up to memberTTL ttls.
func (l *lease) avoiding(node string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return node == l.avoid && time.Now().Before(l.avoidUntil)
}

func describe(e jetstream.KeyValueEntry) string {
	rec, err := decodeLease(e.Value())
	if err != nil {
		return fmt.Sprintf("revision %d", e.Revision())
	}
	return fmt.Sprintf("%s epoch %d", rec.Holder, rec.epoch(e.Revision()))
}

// acquired starts the work under a lease just won at revision rev, by a
// write sent at sent.
func (l *lease) acquired(ctx context.Context, rev uint64, sent time.Time) {
	h := &Holding{Name: l.name, Epoch: rev, l: l}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	l.mu.Lock()
	l.held, l.rev, l.sent, l.stop, l.done = h, rev, sent, stop, done
	l.mu.Unlock()
	l.m.metrics.acquired(l.name, rev)
	l.m.log.Info("acquired lease", "lease", l.name, "epoch", rev)
	go func() {
		defer close(done)
		if err := l.work(wctx, h); err != nil && wctx.Err() == nil {
			l.m.log.Error("lease work failed", "lease", l.name, "epoch", rev, "err", err)
		}
	}()
}

// renew writes the lease again by compare-and-swap on rev. Called with
// casMu held.
func (l *lease) renew(ctx context.Context, h *Holding, rev uint64) error {
	ctx, cancel := context.WithTimeout(ctx, l.m.cfg.TTL/3)
	defer cancel()
	sent := time.Now()
	next, err := l.m.kv.Update(ctx, l.name, l.record(h.Epoch).encode(), rev)
	if err == nil {
		l.mu.Lock()
		if l.held == h {
			l.rev, l.sent = next, sent
		}
		l.mu.Unlock()
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("renewing lease %s: %w", l.name, err)
	}
	// Either someone else wrote it, or an earlier renewal of ours
	// succeeded without us hearing the answer: adopt our own write.
	e, gerr := l.m.get(ctx, l.m.kv, l.name)
	if gerr != nil {
		return fmt.Errorf("renewing lease %s: %w (and reading it: %w)", l.name, err, gerr)
	}
	if !l.ours(e, h.Epoch) {
		return fmt.Errorf("%w: %s now %s", ErrLost, l.name, describe(e))
	}
	l.mu.Lock()
	if l.held == h && e.Revision() > l.rev {
		l.rev = e.Revision() // its send time is unknown: keep the older one
	}
	l.mu.Unlock()
	return fmt.Errorf("renewing lease %s: adopted revision %d of our own", l.name, e.Revision())
}

// lose stops the work of a lease that is no longer safely held.
func (l *lease) lose(h *Holding, why string) {
	l.m.log.Warn("lease lost; stopping its work", "lease", l.name, "epoch", h.Epoch, "reason", why)
	l.m.metrics.event(l.name, "lost")
	l.stopWork(false)
}

// stopWork cancels the work and waits for it a bounded time. A lost
// lease is cleared first (its Valid and Check fail at once); on a graceful
// release the holding stays valid until the work returned, so the work
// can finish and commit what it holds. It returns the revision of this
// node's last write.
func (l *lease) stopWork(graceful bool) (rev uint64) {
	l.mu.Lock()
	h, stop, done := l.held, l.stop, l.done
	if !graceful {
		l.held = nil
	}
	l.mu.Unlock()
	if h == nil {
		return 0
	}
	h.graceful.Store(graceful)
	stop()
	// A graceful stop may take its time to commit and hand over (the
	// partition work allows itself a third of the ttl), and a lease
	// deleted once the work returned spares the successor the whole ttl.
	// The holding stays valid meanwhile: renewed, or at shutdown (no more
	// renewals) until two thirds of the ttl after the last renewal, which
	// was at most a quarter of the ttl ago; so the wait is 5/12 of the ttl.
	// A lost lease's work is fenced already and need not be waited for long.
	wait := l.m.cfg.TTL / 6
	if graceful {
		wait = l.m.cfg.TTL * 5 / 12
	}
	select {
	case <-done:
	case <-time.After(wait):
		l.m.log.Warn("lease work slow to stop; its side effects are fenced", "lease", l.name, "epoch", h.Epoch)
	}
	l.casMu.Lock() // no renewal in flight: rev is this node's last write
	l.mu.Lock()
	if l.held == h {
		l.held = nil
	}
	rev = l.rev
	l.mu.Unlock()
	l.casMu.Unlock()
	l.m.metrics.released(l.name)
	return rev
}

// release stops the work and deletes the lease by compare-and-swap, so the
// next holder need not wait for the ttl.
func (l *lease) release(ctx context.Context) {
	l.mu.Lock()
	h := l.held
	l.mu.Unlock()
	if h == nil {
		return
	}
	rev := l.stopWork(true)
	l.mu.Lock()
	done := l.done
	l.mu.Unlock()
	select {
	case <-done:
	default:
		return // still running: let the lease expire rather than hand it on
	}
	ctx, cancel := context.WithTimeout(ctx, l.m.cfg.TTL/3)
	defer cancel()
	l.casMu.Lock()
	err := l.m.kv.Delete(ctx, l.name, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// A renewal whose answer never came can still have been
		// committed: Run stops the renewals before a graceful leave
		// releases, and cancels the one in flight. If the latest write is
		// that renewal of ours, delete at its revision; otherwise the
		// successor would wait out the ttl for a lease no one holds.
		if e, gerr := l.m.get(ctx, l.m.kv, l.name); gerr == nil && l.ours(e, h.Epoch) {
			err = l.m.kv.Delete(ctx, l.name, jetstream.LastRevision(e.Revision()))
		}
	}
	l.casMu.Unlock()
	if err != nil {
		l.m.log.Warn("releasing lease", "lease", l.name, "err", err)
		return
	}
	l.m.metrics.event(l.name, "released")
	l.m.log.Info("released lease", "lease", l.name)
}

// ours is whether e is a renewal this incarnation of the node wrote for
// its holding at epoch.
func (l *lease) ours(e jetstream.KeyValueEntry, epoch uint64) bool {
	rec, err := decodeLease(e.Value())
	return err == nil && rec.Holder == l.m.cfg.NodeName && rec.Nonce == l.m.nonce && rec.Epoch == epoch
}

func (l *lease) record(epoch uint64) leaseRecord {
	// Stamped after the caller noted its send time: the stamp is never
	// earlier than the instant the holder's validity counts from.
	return leaseRecord{Holder: l.m.cfg.NodeName, Nonce: l.m.nonce, Epoch: epoch, Sent: int64(time.Since(l.m.started))}
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func without(live []memberRecord, node string) []memberRecord {
	out := make([]memberRecord, 0, len(live))
	for _, r := range live {
		if r.Node != node {
			out = append(out, r)
		}
	}
	return out
}
