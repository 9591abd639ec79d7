package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// Owners is the cluster's partition ownership as the router knows it (a
// watch of the partition leases).
type Owners interface {
	// Epoch is partition p's current epoch, 0 when p has no owner.
	Epoch(p int) uint64
}

// RouterConfig bounds routed queries.
type RouterConfig struct {
	// Timeout bounds one request to an owner and, for answers over all
	// partitions, the whole gathering.
	Timeout time.Duration
	// RetryAfter is sent with every 503 of the router.
	RetryAfter time.Duration
}

// DefaultRouterConfig returns the defaults (docs/api.md, "Cluster mode").
func DefaultRouterConfig() RouterConfig {
	return RouterConfig{Timeout: 2 * time.Second, RetryAfter: time.Second}
}

// Router is the query API of a node under partition ownership: a query
// about a user is answered by the owner of the user's partition (this
// node, or another one over NATS), title stats and top paths are
// gathered from the owners of every partition. Every other route goes to
// the API unchanged.
type Router struct {
	api    *API
	local  *Responder
	owners Owners
	conn   Conn
	cfg    RouterConfig
	log    *slog.Logger
	routed *prometheus.CounterVec
	mux    *http.ServeMux
}

// NewRouter routes api's queries: local is this node's responder (its
// partitions are answered without a hop), owners the current epochs,
// conn the NATS client that reaches the other owners.
func NewRouter(api *API, local *Responder, owners Owners, conn Conn, cfg RouterConfig, log *slog.Logger,
	reg prometheus.Registerer) (*Router, error) {
	if api == nil || local == nil || owners == nil || conn == nil {
		return nil, errors.New("serve: the router needs the API, the responder, the owners and a NATS connection")
	}
	if cfg.Timeout <= 0 || cfg.RetryAfter <= 0 {
		return nil, fmt.Errorf("serve: router timeout %s and retry-after %s must be positive", cfg.Timeout, cfg.RetryAfter)
	}
	rt := &Router{api: api, local: local, owners: owners, conn: conn, cfg: cfg, log: log, mux: http.NewServeMux(),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clickpipe_serve_routed_queries_total",
			Help: "Partition queries by where they were answered (local, remote) or why not (stale, no_owner, timeout, unavailable)."},
			[]string{"result"})}
	if reg != nil {
		if err := reg.Register(rt.routed); err != nil {
			return nil, fmt.Errorf("registering router metrics: %w", err)
		}
	}
	for _, route := range []string{"continue-watching", "sessions", "profile"} {
		rt.mux.HandleFunc("GET /v1/users/{user_id}/"+route, rt.user)
	}
	rt.mux.HandleFunc("GET /v1/titles/{asset_id}/stats", rt.gather(kindTitle))
	rt.mux.HandleFunc("GET /v1/paths/top", rt.gather(kindPaths))
	rt.mux.Handle("/", api)
	return rt, nil
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.mux.ServeHTTP(w, r) }

// routeError is a query the owners could not answer: 503 + Retry-After.
type routeError struct {
	code string
	msg  string
	err  error
}

func (e *routeError) Error() string { return "serve: " + e.message() }

// message is the error as the client reads it (its code is beside it).
func (e *routeError) message() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *routeError) Unwrap() error { return e.err }

func (rt *Router) fail(w http.ResponseWriter, err error) {
	var re *routeError
	if !errors.As(err, &re) {
		re = &routeError{code: "owner_unavailable", msg: "routing the query", err: err}
	}
	rt.log.Warn("routed query", "code", re.code, "err", err)
	rt.retryAfter(w)
	httpx.WriteError(w, http.StatusServiceUnavailable, re.code, re.message())
}

func (rt *Router) retryAfter(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(int(max(1, rt.cfg.RetryAfter.Round(time.Second)/time.Second))))
}

// user answers a per-user route from the owner of the user's partition,
// following once a redirect to the partition of the user it was merged
// into.
func (rt *Router) user(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), rt.cfg.Timeout)
	defer cancel()
	user := r.PathValue("user_id")
	parts := rt.api.live.Partitions()
	a, err := rt.ask(ctx, event.Partition(user, parts), query{kind: kindUser, path: r.URL.RequestURI()})
	if err == nil && a.status == http.StatusTemporaryRedirect {
		merged := a.header.Get(HeaderUser)
		a, err = rt.ask(ctx, event.Partition(merged, parts),
			query{kind: kindUser, path: withUser(r.URL, merged), resolved: true})
	}
	if err == nil && a.status == http.StatusTemporaryRedirect {
		err = &routeError{code: "owner_unavailable", msg: "the merged user's owner redirected again"}
	}
	if err != nil {
		rt.fail(w, err)
		return
	}
	if a.status == http.StatusServiceUnavailable {
		rt.retryAfter(w)
	}
	a.write(w)
}

// withUser is u's request URI (a per-user route) for the user merged.
func withUser(u *url.URL, merged string) string {
	uri := "/v1/users/" + url.PathEscape(merged) + "/" + path.Base(u.Path)
	if u.RawQuery != "" {
		uri += "?" + u.RawQuery
	}
	return uri
}

// ask gets partition p's answer to q from its owner: this node when it
// owns p at the current epoch, else over NATS. An answer older than the
// current epoch is rejected and asked again once.
func (rt *Router) ask(ctx context.Context, p int, q query) (answer, error) {
	var last answer
	for range 2 {
		a, err := rt.askOnce(ctx, p, q)
		if err != nil {
			return answer{}, err
		}
		if cur := rt.owners.Epoch(p); a.epoch >= cur && a.epoch > 0 {
			return a, nil
		}
		rt.routed.WithLabelValues("stale").Inc()
		last = a
	}
	return answer{}, &routeError{code: "stale_owner", msg: fmt.Sprintf(
		"partition %d: %s answered with epoch %d, the current epoch is %d", p, last.node, last.epoch, rt.owners.Epoch(p))}
}

func (rt *Router) askOnce(ctx context.Context, p int, q query) (answer, error) {
	if e, ok := rt.local.Owned(p); ok && e >= rt.owners.Epoch(p) {
		rt.routed.WithLabelValues("local").Inc()
		return rt.local.answer(ctx, p, q), nil
	}
	reply, err := rt.conn.RequestMsgWithContext(ctx, q.msg(p))
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		rt.routed.WithLabelValues("no_owner").Inc()
		return answer{}, &routeError{code: "no_owner", msg: fmt.Sprintf("no node answers for partition %d", p)}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		rt.routed.WithLabelValues("timeout").Inc()
		return answer{}, &routeError{code: "owner_timeout", msg: fmt.Sprintf("the owner of partition %d did not answer in %s", p, rt.cfg.Timeout)}
	case err != nil:
		rt.routed.WithLabelValues("unavailable").Inc()
		return answer{}, &routeError{code: "owner_unavailable", msg: fmt.Sprintf("partition %d", p), err: err}
	}
	rt.routed.WithLabelValues("remote").Inc()
	a, err := decodeAnswer(reply)
	if err != nil {
		return answer{}, &routeError{code: "owner_unavailable", msg: fmt.Sprintf("partition %d", p), err: err}
	}
	return a, nil
}

// askAll asks every partition q within the router's deadline; any
// partition without an answer fails the whole (no partial answers).
func (rt *Router) askAll(ctx context.Context, q query) ([]answer, error) {
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.Timeout)
	defer cancel()
	n := rt.api.live.Partitions()
	answers, errs := make([]answer, n), make([]error, n)
	var wg sync.WaitGroup
	for p := range n {
		wg.Go(func() { answers[p], errs[p] = rt.ask(ctx, p, q) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return answers, nil
}
