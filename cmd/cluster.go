package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/clickpipe/clickpipe/archive"
	"github.com/clickpipe/clickpipe/cluster"
	"github.com/clickpipe/clickpipe/internal/httpx"
)

// openCluster starts the lease manager of a clustered node (no-op on one
// node): membership and the leases registered before it runs.
func (n *node) openCluster(ctx context.Context) error {
	c := n.cfg.Cluster
	if !c.Enabled {
		return nil
	}
	var err error
	n.leases, err = cluster.New(cluster.Config{
		NodeName: c.NodeName, TTL: c.LeaseTTL, Replicas: n.buf.Replicas(),
		Info: map[string]string{"version": Version},
	}, n.buf.JetStream(), n.child("cluster"), n.reg)
	if err != nil {
		return fmt.Errorf("configuring cluster leases: %w", err)
	}
	octx, cancel := context.WithTimeout(ctx, c.JoinTimeout)
	defer cancel()
	if err := n.leases.Open(octx); err != nil {
		return fmt.Errorf("opening cluster leases: %w", err)
	}
	return nil
}

// clusterComponent runs the lease manager; it stops after the archive so
// the lake writer's final commit still holds its lease.
func (n *node) clusterComponent() component {
	log := n.child("cluster")
	return component{name: "cluster", run: n.leases.Run, stop: func(ctx context.Context) error {
		// The sessionizer and the archive have drained: hand this node's
		// stream and consumer leaderships over first, so that the
		// successors of its leases find every stream with a leader.
		began := time.Now()
		moved, err := n.buf.StepDown(ctx)
		if err != nil {
			log.Warn("handing over stream leaderships", "err", err)
		}
		log.Info("handed over stream leaderships", "groups", moved, "took", time.Since(began))
		return n.leases.Shutdown(ctx)
	}}
}

// lakeLeases gives each archive table a lease "lake-<table>" (one lake
// writer per table across the cluster); it implements archive.Lease.
type lakeLeases struct {
	grants map[string]chan lakeGrant
}

type lakeGrant struct {
	ctx context.Context
	h   *cluster.Holding
}

var _ archive.Lease = (*lakeLeases)(nil)

// LakeLeaseName is the lease that guards table's writer.
func lakeLeaseName(table string) string { return "lake-" + table }

func newLakeLeases(m *cluster.Manager) *lakeLeases {
	l := &lakeLeases{grants: map[string]chan lakeGrant{}}
	for _, table := range archive.Tables() {
		ch := make(chan lakeGrant)
		l.grants[table] = ch
		m.Register(lakeLeaseName(table), func(ctx context.Context, h *cluster.Holding) error {
			select {
			case ch <- lakeGrant{ctx: ctx, h: h}:
			case <-ctx.Done():
				return nil
			}
			<-ctx.Done()
			return nil
		})
	}
	return l
}

func (l *lakeLeases) Hold(ctx context.Context, table string) (context.Context, func(context.Context) error, error) {
	ch, ok := l.grants[table]
	if !ok {
		return nil, nil, fmt.Errorf("no lake lease for table %s", table)
	}
	select {
	case g := <-ch:
		return g.ctx, g.h.Check, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// clusterHandler is GET /v1/admin/cluster: members, lease holders, epochs.
func (n *node) clusterHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.leases == nil {
			httpx.WriteError(w, http.StatusNotFound, "not_clustered", "cluster.enabled is false on this node")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		st, err := n.leases.Status(ctx)
		if err != nil {
			w.Header().Set("Retry-After", "1")
			httpx.WriteError(w, http.StatusServiceUnavailable, "cluster_unavailable", err.Error())
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"node": n.cfg.Cluster.NodeName, "status": st})
	})
}

func (n *node) routeCluster(mux *http.ServeMux) {
	mux.Handle("GET /v1/admin/cluster", httpx.RequireBearer(n.queryTokens, n.clusterHandler()))
}

type clusterFlags struct{ url, token, dataDir string }

func newClusterCmd() *cobra.Command {
	f := &clusterFlags{}
	c := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect a clickpipe cluster",
		Long: `cluster inspects the nodes of a clickpipe cluster (cluster.enabled; docs/cluster.md)
through any node's query listener.

Example:
  clickpipe cluster status --url http://127.0.0.1:8081 --token "$TOKEN"`,
		Args: cobra.NoArgs,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the cluster's members, lease holders and epochs",
		Long: `status asks a running node (GET /v1/admin/cluster on its query listener) for the live
members and every lease: its holder, epoch (the KV revision of the holder's acquiring write)
and the member rendezvous hashing places it on; a holder that differs from that placement is a
handover in progress. The token is --token, else $CLICKPIPE_QUERY_TOKEN, else a local serve's
development token.

Example:
  clickpipe cluster status --url http://127.0.0.1:8081 --token "$TOKEN"`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			f.token = firstNonEmpty(f.token, os.Getenv("CLICKPIPE_QUERY_TOKEN"), devCredential(f.dataDir, "dev-query-token"))
			return runClusterStatus(c.Context(), f, c.OutOrStdout())
		},
	}
	status.Flags().StringVar(&f.url, "url", "http://127.0.0.1:8081", "query listener base URL of any node")
	status.Flags().StringVar(&f.token, "token", "", "query API bearer token (default $CLICKPIPE_QUERY_TOKEN)")
	status.Flags().StringVar(&f.dataDir, "data-dir", defaultDataDir(), "where a local serve keeps its development token")
	c.AddCommand(status)
	return c
}

func runClusterStatus(ctx context.Context, f *clusterFlags, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body, err := apiCall(ctx, http.DefaultClient, http.MethodGet, strings.TrimRight(f.url, "/")+"/v1/admin/cluster", f.token, nil)
	if err != nil {
		return err
	}
	var doc struct {
		Node   string         `json:"node"`
		Status cluster.Status `json:"status"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("decoding the answer: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "asked node %s\n\nMEMBER\tINGEST\tQUERY\tVERSION\n", doc.Node)
	for _, m := range doc.Status.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Node, m.Info["ingest"], m.Info["query"], m.Info["version"])
	}
	fmt.Fprintf(tw, "\nLEASE\tHOLDER\tEPOCH\tPLACED ON\n")
	for _, l := range doc.Status.Leases {
		placed := l.Desired
		if placed != l.Holder {
			placed += " (handover pending)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", l.Name, l.Holder, l.Epoch, placed)
	}
	return tw.Flush()
}
