package cmd

import (
	"context"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// invariants are the settings the delivery promises depend on
// (RELIABILITY.md), read back from the running components rather than
// from the configuration, so an operator (and test T13) can check them.
type invariants struct {
	JetStream struct {
		SyncAlways bool   `json:"sync_always"`
		NoSigs     bool   `json:"no_sigs"`
		Listener   bool   `json:"client_listener"`
		Durability string `json:"durability"`
	} `json:"jetstream"`
	Streams   map[string]streamInvariants  `json:"streams"`
	Consumers map[string]consumerInvariant `json:"consumers"`
	Badger    struct {
		SyncWrites bool `json:"sync_writes"`
	} `json:"badger"`
	HTTP map[string]httpInvariants `json:"http"`
}

type streamInvariants struct {
	Discard     string   `json:"discard"`
	Retention   string   `json:"retention"`
	Storage     string   `json:"storage"`
	MaxAge      string   `json:"max_age"`
	MaxBytes    int64    `json:"max_bytes"`
	PersistMode string   `json:"persist_mode"`
	Subjects    []string `json:"subjects"`
}

type consumerInvariant struct {
	AckPolicy  string `json:"ack_policy"`
	MaxDeliver int    `json:"max_deliver"`
}

type httpInvariants struct {
	ReadHeaderTimeout string `json:"read_header_timeout"`
	ReadTimeout       string `json:"read_timeout"`
	WriteTimeout      string `json:"write_timeout"`
	IdleTimeout       string `json:"idle_timeout"`
	MaxHeaderBytes    int    `json:"max_header_bytes"`
}

func httpInv(s *http.Server) httpInvariants {
	return httpInvariants{
		ReadHeaderTimeout: s.ReadHeaderTimeout.String(), ReadTimeout: s.ReadTimeout.String(),
		WriteTimeout: s.WriteTimeout.String(), IdleTimeout: s.IdleTimeout.String(), MaxHeaderBytes: s.MaxHeaderBytes,
	}
}

// readInvariants collects the invariants from the live components.
func (n *node) readInvariants(ctx context.Context) (invariants, error) {
	var inv invariants
	opts := n.buf.ServerOptions()
	inv.JetStream.SyncAlways, inv.JetStream.NoSigs, inv.JetStream.Listener = opts.SyncAlways, opts.NoSigs, !opts.DontListen
	inv.JetStream.Durability = n.cfg.Buffer.Durability
	js := n.buf.JetStream()
	inv.Streams = map[string]streamInvariants{}
	for _, name := range []string{buffer.EventsStream, buffer.FailedStream, buffer.SessionsStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return inv, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return inv, err
		}
		c := info.Config
		persist := "sync"
		if c.PersistMode != jetstream.DefaultPersistMode {
			persist = "async"
		}
		inv.Streams[name] = streamInvariants{Discard: c.Discard.String(), Retention: c.Retention.String(),
			Storage: c.Storage.String(), MaxAge: c.MaxAge.String(), MaxBytes: c.MaxBytes, PersistMode: persist, Subjects: c.Subjects}
	}
	inv.Consumers = map[string]consumerInvariant{}
	for _, stream := range []string{buffer.EventsStream, buffer.FailedStream, buffer.SessionsStream} {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return inv, err
		}
		for c := range s.ListConsumers(ctx).Info() {
			inv.Consumers[c.Name] = consumerInvariant{AckPolicy: c.Config.AckPolicy.String(), MaxDeliver: c.Config.MaxDeliver}
		}
	}
	inv.Badger.SyncWrites = n.state.SyncWrites()
	inv.HTTP = map[string]httpInvariants{"ingest": httpInv(n.ingestSrv), "query": httpInv(n.querySrv)}
	return inv, nil
}

func (n *node) invariantsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		inv, err := n.readInvariants(ctx)
		if err != nil {
			httpx.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
			return
		}
		httpx.WriteJSON(w, http.StatusOK, inv)
	})
}
