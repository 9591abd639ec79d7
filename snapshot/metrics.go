package snapshot

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	size     prometheus.Histogram
	duration *prometheus.HistogramVec
	writes   *prometheus.CounterVec
	restores *prometheus.CounterVec
	owned    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		size: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clickpipe_snapshot_size_bytes",
			Help:    "Size of the partition snapshots written.",
			Buckets: prometheus.ExponentialBuckets(64<<10, 4, 10)}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "clickpipe_snapshot_duration_seconds",
			Help:    "Time to write (export and upload) or restore (download and import) one partition snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10)}, []string{"op"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clickpipe_snapshot_writes_total",
			Help: "Partition snapshots written, by result (ok, error)."}, []string{"result"}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clickpipe_snapshot_restores_total",
			Help: "Partition acquisitions by what became of the local state: restored (from a snapshot), " +
				"kept (local state not behind), replay (local state a little behind, kept and replayed forward: snapshot.replay_within), corrupt (a refused snapshot, an older one is tried), " +
				"dropped (an interrupted restore with no usable snapshot: full replay), error; " +
				"and ahead: restores made before an acquisition, when the partition's holder went silent."}, []string{"result"}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clickpipe_snapshot_owned_partitions",
			Help: "Partitions this node snapshots (acquired and not released)."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.size, m.duration, m.writes, m.restores, m.owned} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering snapshot metrics: %w", err)
		}
	}
	return m, nil
}
