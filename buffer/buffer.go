package buffer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrStreamFull is returned by Publish when the stream refused a message
// because it reached max_bytes (DiscardNew). Ingest maps it to 503.
var ErrStreamFull = errors.New("buffer: stream full")

// ErrIncompatible reports an existing stream or consumer whose settings
// conflict with the configuration.
var ErrIncompatible = errors.New("buffer: incompatible existing configuration")

// Buffer is the embedded JetStream server and an in-process client.
type Buffer struct {
	cfg Config
	dir string
	log *slog.Logger
	reg prometheus.Registerer

	mu  sync.Mutex
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	col prometheus.Collector

	// msgPrefix and msgSeq make the per-message Nats-Msg-Id of cluster
	// mode: unique per process incarnation, so a retried publish after an
	// ambiguous timeout is dropped by the stream's duplicate window.
	msgPrefix string
	msgSeq    atomic.Uint64
}

// New validates cfg; dir is where the file store lives
// (<data_dir>/jetstream). It starts nothing.
func New(cfg Config, dir string, log *slog.Logger, reg prometheus.Registerer) (*Buffer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("buffer: empty store directory")
	}
	return &Buffer{cfg: cfg, dir: dir, log: log, reg: reg,
		msgPrefix: cfg.Cluster.NodeName + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"}, nil
}

// ServerOptions are the embedded server's options; exported so the
// configuration-invariant tests can check them.
func (b *Buffer) ServerOptions() *server.Options {
	opts := &server.Options{
		ServerName:         "clickpipe",
		JetStream:          true,
		StoreDir:           b.dir,
		NoSigs:             true,
		NoLog:              true,
		DontListen:         true,
		MaxPayload:         maxPayloadSize,
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  b.maxStore(),
		SyncAlways:         b.cfg.Durability == DurabilityFsync,
	}
	if b.cfg.Listen != "" {
		host, port, err := net.SplitHostPort(b.cfg.Listen)
		if err == nil {
			opts.DontListen = false
			opts.Host = host
			opts.Port, _ = strconv.Atoi(port)
		}
	}
	if b.cfg.Cluster.Enabled {
		b.clusterOptions(opts)
	}
	return opts
}

// clusterOptions makes the server a named JetStream cluster peer: the
// route listener, the peers' routes, the node name as server name.
func (b *Buffer) clusterOptions(opts *server.Options) {
	c := b.cfg.Cluster
	opts.ServerName = c.NodeName
	host, port, _ := splitHostPort(c.Listen)
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: port, Advertise: c.Advertise}
	opts.Routes, _ = c.routeURLs()
	if opts.DontListen {
		// The server starts its routes only after its client listener
		// is up (server.Start), so cluster mode needs one: loopback, on
		// a port of the kernel's choosing.
		opts.DontListen = false
		opts.Host = "127.0.0.1"
		opts.Port = server.RANDOM_PORT
	}
}

// Open starts the server, connects in-process and makes sure the streams
// exist with the configured settings.
func (b *Buffer) Open(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		return errors.New("buffer: already open")
	}
	srv, err := server.NewServer(b.ServerOptions())
	if err != nil {
		return fmt.Errorf("creating nats server: %w", err)
	}
	srv.SetLoggerV2(&natsLogger{log: b.log}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("starting nats server: not ready after 30s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("clickpipe"),
		nats.MaxReconnects(-1))
	if err != nil {
		srv.Shutdown()
		return fmt.Errorf("connecting in-process: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		return fmt.Errorf("creating jetstream client: %w", err)
	}
	b.srv, b.nc, b.js = srv, nc, js
	if err := b.ensureStreamsJoined(ctx); err != nil {
		b.closeLocked()
		return err
	}
	if err := b.ensureBuckets(ctx); err != nil {
		b.closeLocked()
		return err
	}
	if b.reg != nil {
		b.col = &streamCollector{b: b}
		if err := b.reg.Register(b.col); err != nil {
			b.col = nil
			b.closeLocked()
			return fmt.Errorf("registering buffer metrics: %w", err)
		}
	}
	b.log.Info("jetstream ready", "store_dir", b.dir, "durability", b.cfg.Durability,
		"partitions", b.cfg.Partitions, "retention", b.cfg.Retention, "max_bytes", b.cfg.MaxBytes)
	return nil
}

// Close drains the client connection and shuts the server down. It is
// idempotent.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closeLocked()
}

func (b *Buffer) closeLocked() error {
	if b.srv == nil {
		return nil
	}
	if b.col != nil && b.reg != nil {
		b.reg.Unregister(b.col)
		b.col = nil
	}
	if b.nc != nil {
		// Flush outstanding acks before the server goes.
		_ = b.nc.FlushTimeout(5 * time.Second)
		b.nc.Close()
	}
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
	b.srv, b.nc, b.js = nil, nil, nil
	return nil
}

// Partitions is the configured partition count.
func (b *Buffer) Partitions() int { return b.cfg.Partitions }

// JetStream exposes the client for adapters in this package's callers'
// tests and tools (tail, rebuild). Nil before Open.
func (b *Buffer) JetStream() jetstream.JetStream {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.js
}

// Server exposes the embedded server (for invariant tests). Nil before Open.
func (b *Buffer) Server() *server.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.srv
}

func (b *Buffer) client() (jetstream.JetStream, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.js == nil {
		return nil, errors.New("buffer: not open")
	}
	return b.js, nil
}

// Healthy reports nil while the server runs with JetStream enabled and the
// client is connected.
func (b *Buffer) Healthy() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.srv == nil:
		return errors.New("buffer: not open")
	case !b.srv.JetStreamEnabled():
		return errors.New("buffer: jetstream disabled (disk full or store error)")
	case !b.nc.IsConnected():
		return errors.New("buffer: client not connected")
	case b.cfg.Cluster.Enabled && !b.srv.JetStreamIsCurrent():
		return errors.New("buffer: no jetstream meta leader, or this node is not caught up with it (cluster quorum lost?)")
	}
	return nil
}

// Publish stores one message on partition p's subject and returns its
// stream sequence once JetStream acknowledged it (after fsync in fsync
// mode). A full stream returns ErrStreamFull.
func (b *Buffer) Publish(ctx context.Context, p int, body []byte, hdr map[string]string) (uint64, error) {
	return b.publish(ctx, Subject(p), body, hdr)
}

// PublishFailed stores one message on the failed-events stream.
func (b *Buffer) PublishFailed(ctx context.Context, body []byte, hdr map[string]string) (uint64, error) {
	return b.publish(ctx, FailedSubject, body, hdr)
}

// PublishSession stores one closed-session message; msgID is the
// Nats-Msg-Id that makes a re-publish idempotent within 10 minutes.
func (b *Buffer) PublishSession(ctx context.Context, body []byte, msgID string) (uint64, error) {
	return b.publish(ctx, SessionsSubject, body, map[string]string{"Nats-Msg-Id": msgID})
}

func (b *Buffer) publish(ctx context.Context, subject string, body []byte, hdr map[string]string) (uint64, error) {
	js, err := b.client()
	if err != nil {
		return 0, err
	}
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	for k, v := range hdr {
		msg.Header.Set(k, v)
	}
	var ack *jetstream.PubAck
	if b.cfg.Cluster.Enabled {
		ack, err = b.publishReplicated(ctx, js, msg)
	} else {
		ack, err = js.PublishMsg(ctx, msg)
	}
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeStoreFailed || apiErr.ErrorCode == errCodeResourcesExceeded) {
			return 0, fmt.Errorf("%w: %w", ErrStreamFull, err)
		}
		return 0, fmt.Errorf("publishing to %s: %w", subject, err)
	}
	return ack.Sequence, nil
}

// StreamState is a snapshot of one stream.
type StreamState struct {
	Messages uint64
	Bytes    uint64
	FirstSeq uint64
	LastSeq  uint64
	MaxBytes int64
	// Leader and Replicas (the followers as the leader sees them) are set
	// on a cluster; Leader is empty while the stream has none.
	Leader   string
	Replicas []ReplicaState
}

// ReplicaState is one follower of a replicated stream.
type ReplicaState struct {
	Peer    string
	Current bool          // caught up with the leader
	Lag     uint64        // operations behind the leader
	Seen    time.Duration // since the leader last heard from it
}

// State returns the current state of the named stream.
func (b *Buffer) State(ctx context.Context, stream string) (StreamState, error) {
	js, err := b.client()
	if err != nil {
		return StreamState{}, err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return StreamState{}, fmt.Errorf("looking up stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return StreamState{}, fmt.Errorf("reading stream %s info: %w", stream, err)
	}
	st := info.State
	out := StreamState{Messages: st.Msgs, Bytes: st.Bytes, FirstSeq: st.FirstSeq,
		LastSeq: st.LastSeq, MaxBytes: info.Config.MaxBytes}
	if c := info.Cluster; c != nil {
		out.Leader = c.Leader
		for _, r := range c.Replicas {
			out.Replicas = append(out.Replicas, ReplicaState{Peer: r.Name, Current: r.Current, Lag: r.Lag, Seen: r.Active})
		}
	}
	return out, nil
}

// JetStream API error codes (nats-server errors.json) that mean "no room":
// JSStreamStoreFailedF carries "maximum bytes exceeded" under DiscardNew,
// JSStorageResourcesExceededErr means the server's store limit is reached.
const (
	errCodeStoreFailed       = 10077
	errCodeResourcesExceeded = 10047
)

func storeDir(dataDir string) string { return filepath.Join(dataDir, "jetstream") }

// StoreDir is where the buffer keeps its files under a data directory.
func StoreDir(dataDir string) string { return storeDir(dataDir) }
