package serve

import (
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/clickpipe/clickpipe/state"
)

// Query routing over NATS request/reply (docs/format/query.md).
const (
	// SubjectPrefix + "<p>" is the subject partition p's owner answers.
	SubjectPrefix = "clickpipe.query."

	HeaderQuery    = "Clickpipe-Query"    // request: user, title or paths
	HeaderPath     = "Clickpipe-Path"     // request (user): path and query string
	HeaderResolved = "Clickpipe-Resolved" // request (user): "1" after a redirect
	HeaderAsset    = "Clickpipe-Asset"    // request (title): the asset id
	HeaderStatus   = "Clickpipe-Status"   // reply: HTTP status
	HeaderEpoch    = "Clickpipe-Epoch"    // reply and routed HTTP answer: the partition's epoch
	HeaderNode     = "Clickpipe-Node"     // reply and routed HTTP answer: the answering node
	HeaderUser     = "Clickpipe-User"     // reply 307: the merged user to ask for
)

// Query kinds.
const (
	kindUser  = "user"
	kindTitle = "title"
	kindPaths = "paths"
)

// Subject is the subject partition p's owner answers.
func Subject(p int) string { return SubjectPrefix + strconv.Itoa(p) }

// query is one request to a partition's owner.
type query struct {
	kind     string
	path     string // kindUser: request URI
	resolved bool   // kindUser: the user is the merged user
	asset    string // kindTitle
}

func (q query) msg(p int) *nats.Msg {
	m := nats.NewMsg(Subject(p))
	m.Header.Set(HeaderQuery, q.kind)
	switch q.kind {
	case kindUser:
		m.Header.Set(HeaderPath, q.path)
		if q.resolved {
			m.Header.Set(HeaderResolved, "1")
		}
	case kindTitle:
		m.Header.Set(HeaderAsset, q.asset)
	}
	return m
}

func decodeQuery(m *nats.Msg) query {
	return query{kind: m.Header.Get(HeaderQuery), path: m.Header.Get(HeaderPath),
		resolved: m.Header.Get(HeaderResolved) == "1", asset: m.Header.Get(HeaderAsset)}
}

// answer is an owner's answer: an HTTP status, the headers that matter
// and the body, stamped with the partition's epoch and the node.
type answer struct {
	status int
	header http.Header
	body   []byte
	epoch  uint64
	node   string
}

// relayed are the headers of an answer that travel and reach the client.
var relayed = []string{"Content-Type", "X-Content-Type-Options", HeaderUser}

func (a answer) msg() *nats.Msg {
	m := &nats.Msg{Header: nats.Header{}, Data: a.body}
	m.Header.Set(HeaderStatus, strconv.Itoa(a.status))
	m.Header.Set(HeaderEpoch, strconv.FormatUint(a.epoch, 10))
	m.Header.Set(HeaderNode, a.node)
	for _, k := range relayed {
		if v := a.header.Get(k); v != "" {
			m.Header.Set(k, v)
		}
	}
	return m
}

func decodeAnswer(m *nats.Msg) (answer, error) {
	a := answer{header: http.Header{}, body: m.Data, node: m.Header.Get(HeaderNode)}
	var err error
	if a.status, err = strconv.Atoi(m.Header.Get(HeaderStatus)); err != nil {
		return a, errBadAnswer
	}
	if a.epoch, err = strconv.ParseUint(m.Header.Get(HeaderEpoch), 10, 64); err != nil {
		return a, errBadAnswer
	}
	for _, k := range relayed {
		if v := m.Header.Get(k); v != "" {
			a.header.Set(k, v)
		}
	}
	return a, nil
}

// write relays the answer to an HTTP client.
func (a answer) write(w http.ResponseWriter) {
	for _, k := range relayed[:2] {
		if v := a.header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.Header().Set(HeaderEpoch, strconv.FormatUint(a.epoch, 10))
	w.Header().Set(HeaderNode, a.node)
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// share is the body of a title or paths answer: one partition's share of
// an aggregate over all partitions, with its freshness.
type share struct {
	Freshness wireFreshness    `json:"freshness"`
	Title     *wireTitle       `json:"title,omitempty"`
	Paths     map[string]int64 `json:"paths,omitempty"`
}

type wireFreshness struct {
	AppliedThrough time.Time `json:"applied_through"`
	OldestPending  time.Time `json:"oldest_pending"`
	Watermark      time.Time `json:"watermark"`
}

type wireTitle struct {
	Starts      int64      `json:"starts"`
	Completions int64      `json:"completions"`
	WatchMs     int64      `json:"watch_ms"`
	RebufferMs  int64      `json:"rebuffer_ms"`
	Minutes     [][3]int64 `json:"minutes"` // [minute, starts, viewers]
}

func toWireFreshness(f state.Freshness) wireFreshness {
	return wireFreshness{AppliedThrough: f.AppliedThrough, OldestPending: f.OldestPending, Watermark: f.Watermark}
}

func (f wireFreshness) state() state.Freshness {
	return state.Freshness{AppliedThrough: f.AppliedThrough, OldestPending: f.OldestPending, Watermark: f.Watermark}
}

func toWireTitle(t state.Title) *wireTitle {
	w := &wireTitle{Starts: t.Starts, Completions: t.Completions, WatchMs: t.WatchMs, RebufferMs: t.RebufferMs,
		Minutes: make([][3]int64, 0, len(t.Minutes))}
	for _, m := range t.Minutes {
		w.Minutes = append(w.Minutes, [3]int64{m.Minute, m.Starts, m.Viewers})
	}
	return w
}

func (w *wireTitle) state() state.Title {
	t := state.Title{Starts: w.Starts, Completions: w.Completions, WatchMs: w.WatchMs, RebufferMs: w.RebufferMs}
	for _, m := range w.Minutes {
		t.Minutes = append(t.Minutes, state.Minute{Minute: m[0], Starts: m[1], Viewers: m[2]})
	}
	return t
}
