package process

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events         *prometheus.CounterVec
	closed         prometheus.Counter
	replayed       prometheus.Counter
	published      prometheus.Counter
	batchEvents    prometheus.Histogram
	applySeconds   prometheus.Histogram
	eventToState   prometheus.Histogram
	lagMessages    *prometheus.GaugeVec
	lagSeconds     *prometheus.GaugeVec
	watermark      *prometheus.GaugeVec
	checkpoint     *prometheus.GaugeVec
	regression     *prometheus.GaugeVec
	fenced         prometheus.Counter
	lostDeliveries prometheus.Counter
	owned          prometheus.Gauge
	prepared       *prometheus.CounterVec
	directRead     prometheus.Counter
	directErrors   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	part := []string{"partition"}
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clickpipe_process_events_total",
			Help: "Events by result: applied, duplicate, late (before its session's fold point: counted, not placed in detail), reopened (re-opened a closed session), corrupt (undecodable or an id that cannot key the dedup index), erased (of a user erased by a regulation: skipped)."}, []string{"result"}),
		closed: prometheus.NewCounter(prometheus.CounterOpts{Name: "clickpipe_process_sessions_closed_total",
			Help: "Sessions closed by the watermark."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "clickpipe_process_replayed_messages_total",
			Help: "Messages at or below the checkpoint, acked without applying."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "clickpipe_process_sessions_published_total",
			Help: "Closed sessions relayed from the outbox to the sessions stream."}),
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clickpipe_process_apply_batch_events",
			Help: "Events per committed batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clickpipe_process_apply_duration_seconds",
			Help: "Apply and commit time of a batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		eventToState: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clickpipe_process_event_to_state_seconds",
			Help: "Event receivedAt to state commit.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		lagMessages: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clickpipe_process_consumer_lag_messages",
			Help: "Messages not yet delivered to the partition's consumer."}, part),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clickpipe_process_consumer_lag_seconds",
			Help: "Age of the oldest message of the last fetched batch (0 when caught up)."}, part),
		watermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clickpipe_process_watermark_seconds",
			Help: "Event-time watermark (Unix seconds)."}, part),
		checkpoint: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clickpipe_process_checkpoint_seq",
			Help: "Last applied stream sequence."}, part),
		regression: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clickpipe_process_sequence_regression",
			Help: "1 when the stream is behind the partition's checkpoint and the partition is refused."}, part),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{Name: "clickpipe_process_fenced_commits_total",
			Help: "Partition commits refused because this node no longer owned the partition (cluster.partition_ownership)."}),
		lostDeliveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "clickpipe_process_lost_deliveries_total",
			Help: "Deliveries that never reached the sessionizer (a jump in the consumer's delivery sequence); each reopens its partition from the checkpoint."}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clickpipe_process_owned_partitions",
			Help: "Partitions this node's sessionizer consumes."}),
		prepared: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clickpipe_process_prepared_consumers_total",
			Help: "Partition consumers created ahead of a takeover (Processor.Prepare), by result: created, used (an open took it), stale (the checkpoint moved before the open: not used), error (a creation attempt failed)."}, []string{"result"}),
		directRead: prometheus.NewCounter(prometheus.CounterOpts{Name: "clickpipe_process_direct_read_messages_total",
			Help: "Events messages read directly from a replica of the stream (no consumer) while a partition's consumer was being created (cluster mode)."}),
		directErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "clickpipe_process_direct_read_errors_total",
			Help: "Direct reads of a partition that failed (no replica answered in time); the partition waits for its consumer."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.closed, m.replayed, m.published, m.batchEvents,
		m.applySeconds, m.eventToState, m.lagMessages, m.lagSeconds, m.watermark, m.checkpoint, m.regression, m.fenced, m.lostDeliveries, m.owned, m.prepared,
		m.directRead, m.directErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering process metrics: %w", err)
		}
	}
	return m, nil
}
