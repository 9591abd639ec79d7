package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/clickpipe/clickpipe/internal/httpx"
)

// Conn is the NATS client the responder and the router use (*nats.Conn).
type Conn interface {
	Subscribe(subject string, cb nats.MsgHandler) (*nats.Subscription, error)
	RequestMsgWithContext(ctx context.Context, msg *nats.Msg) (*nats.Msg, error)
	Flush() error
}

var _ Conn = (*nats.Conn)(nil)

var (
	errNotOwner  = errors.New("serve: this node does not own the partition")
	errBadAnswer = errors.New("serve: malformed answer")
)

// Responder answers, for every partition this node owns, the queries
// other nodes route to it (Subject(p)) from the local store, each answer
// stamped with the partition's epoch and this node's name. Its Acquired
// and Released are the partition ownership hooks.
type Responder struct {
	api  *API
	conn Conn
	node string
	log  *slog.Logger

	mu    sync.Mutex
	owned map[int]ownedPartition
	valid func(p int, epoch uint64) bool // nil: every owned partition is
}

type ownedPartition struct {
	epoch uint64
	sub   *nats.Subscription
}

// NewResponder answers through api for node over conn; it subscribes to
// nothing until Acquired.
func NewResponder(api *API, conn Conn, node string, log *slog.Logger) (*Responder, error) {
	if api == nil || conn == nil || node == "" {
		return nil, errors.New("serve: the responder needs the API, a NATS connection and the node name")
	}
	return &Responder{api: api, conn: conn, node: node, log: log, owned: map[int]ownedPartition{}}, nil
}

// SetValidity makes an owned partition count as owned (for the answers
// to routed queries, and for the router's local answers, which ask Owned)
// only while valid(p, epoch) holds: the lease behind the ownership is
// still valid. Without it a node that wakes from a pause past its lease's
// ttl answers from its own state until its lease manager notices the loss
// (up to a renewal tick later). Call before the first Acquired.
func (r *Responder) SetValidity(valid func(p int, epoch uint64) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.valid = valid
}

// Acquired starts answering for partition p at epoch (again: the epoch
// is updated). It returns once the server knows the subscription.
func (r *Responder) Acquired(_ context.Context, p int, epoch uint64) error {
	if err := r.subscribe(p, epoch); err != nil {
		return err
	}
	if err := r.conn.Flush(); err != nil {
		r.log.Warn("flushing the query subscription", "partition", p, "err", err)
	}
	return nil
}

func (r *Responder) subscribe(p int, epoch uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o, ok := r.owned[p]; ok {
		r.owned[p] = ownedPartition{epoch: epoch, sub: o.sub}
		return nil
	}
	sub, err := r.conn.Subscribe(Subject(p), func(m *nats.Msg) { r.handle(p, m) })
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", Subject(p), err)
	}
	r.owned[p] = ownedPartition{epoch: epoch, sub: sub}
	return nil
}

// Released stops answering for partition p; a query being answered gets
// a not_owner answer.
func (r *Responder) Released(_ context.Context, p int, _ bool) {
	r.mu.Lock()
	o, ok := r.owned[p]
	delete(r.owned, p)
	r.mu.Unlock()
	if !ok {
		return
	}
	if err := o.sub.Unsubscribe(); err != nil {
		r.log.Warn("unsubscribing from queries", "partition", p, "err", err)
	}
	if err := r.conn.Flush(); err != nil {
		r.log.Warn("flushing the query unsubscription", "partition", p, "err", err)
	}
}

// Close stops answering for every partition. It is idempotent.
func (r *Responder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for p, o := range r.owned {
		errs = append(errs, o.sub.Unsubscribe())
		delete(r.owned, p)
	}
	return errors.Join(errs...)
}

// Owned reports this node's epoch of partition p, if it owns p (and,
// with SetValidity, its ownership is still valid).
func (r *Responder) Owned(p int) (uint64, bool) {
	r.mu.Lock()
	o, ok := r.owned[p]
	valid := r.valid
	r.mu.Unlock()
	if ok && valid != nil && !valid(p, o.epoch) {
		return o.epoch, false
	}
	return o.epoch, ok
}

func (r *Responder) owns(p int) bool {
	_, ok := r.Owned(p)
	return ok
}

func (r *Responder) handle(p int, m *nats.Msg) {
	if err := m.RespondMsg(r.answer(context.Background(), p, decodeQuery(m)).msg()); err != nil {
		r.log.Warn("answering routed query", "partition", p, "err", err)
	}
}

// answer answers q about partition p from the local store. Its epoch is
// the one this node held when it began, 0 when it does not own p (the
// router takes that as stale).
func (r *Responder) answer(ctx context.Context, p int, q query) answer {
	epoch, ok := r.Owned(p)
	if !ok {
		return r.errorAnswer(http.StatusServiceUnavailable, "not_owner", fmt.Sprintf("%s does not own partition %d", r.node, p))
	}
	var a answer
	switch q.kind {
	case kindUser:
		a = r.user(ctx, q)
	case kindTitle, kindPaths:
		a = r.share(p, q)
	default:
		a = r.errorAnswer(http.StatusBadRequest, "invalid_query", fmt.Sprintf("unknown query kind %q", q.kind))
	}
	a.epoch, a.node = epoch, r.node
	return a
}

// user answers a per-user request through the API, confined to the
// partitions this node owns.
func (r *Responder) user(ctx context.Context, q query) answer {
	if !strings.HasPrefix(q.path, "/v1/users/") {
		return r.errorAnswer(http.StatusBadRequest, "invalid_query", "not a per-user path")
	}
	ctx = withScope(ctx, scope{owns: r.owns, resolved: q.resolved})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.path, nil)
	if err != nil {
		return r.errorAnswer(http.StatusBadRequest, "invalid_query", err.Error())
	}
	rec := &recorder{header: http.Header{}}
	r.api.ServeHTTP(rec, req)
	return answer{status: rec.code(), header: rec.header, body: rec.body.Bytes()}
}

// share answers partition p's share of an aggregate over all partitions.
func (r *Responder) share(p int, q query) answer {
	live := r.api.live
	s := share{Freshness: toWireFreshness(live.Freshness(p))}
	if q.kind == kindTitle {
		t, _ := live.TitleShare(p, q.asset)
		s.Title = toWireTitle(t)
	} else {
		s.Paths = live.Paths(p)
	}
	body, err := json.Marshal(s)
	if err != nil {
		return r.errorAnswer(http.StatusInternalServerError, "internal", err.Error())
	}
	return answer{status: http.StatusOK, header: http.Header{"Content-Type": {"application/json"}}, body: body}
}

func (r *Responder) errorAnswer(status int, code, msg string) answer {
	rec := &recorder{header: http.Header{}}
	httpx.WriteError(rec, status, code, msg)
	return answer{status: status, header: rec.header, body: rec.body.Bytes(), node: r.node}
}

// recorder is the http.ResponseWriter of an answer built in memory.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

func (w *recorder) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}
