package ingest

import "github.com/prometheus/client_golang/prometheus"

// metrics are ingest's Prometheus series, clickpipe_ingest_*.
type metrics struct {
	requests     *prometheus.CounterVec
	events       *prometheus.CounterVec
	reqDuration  *prometheus.HistogramVec
	pubDuration  prometheus.Histogram
	msgBytes     prometheus.Histogram
	msgEvents    prometheus.Histogram
	bytesIn      *prometheus.CounterVec
	panics       prometheus.Counter
	liveDropped  prometheus.Counter
	liveSubs     prometheus.Gauge
	publishFails *prometheus.CounterVec
	connRejected prometheus.Counter
	suppressed   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickpipe_ingest_requests_total", Help: "Tracking API requests by route and status code.",
		}, []string{"route", "status"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickpipe_ingest_events_total",
			Help: "Events by outcome (accepted, invalid, invalid_dropped: invalid and not kept because the failed stream refused them, bot_flagged, bot_dropped, rate_limited, unavailable, not_stored) and reason.",
		}, []string{"outcome", "reason"}),
		reqDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "clickpipe_ingest_request_duration_seconds", Help: "Time from request start to answer, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		pubDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "clickpipe_ingest_publish_duration_seconds", Help: "Time to publish one group-commit message and get its ack.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}),
		msgBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "clickpipe_ingest_commit_message_bytes", Help: "Size of group-commit messages.",
			Buckets: prometheus.ExponentialBuckets(512, 2, 14),
		}),
		msgEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "clickpipe_ingest_commit_message_events", Help: "Events per group-commit message.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickpipe_ingest_received_bytes_total", Help: "Request body bytes, on the wire and decompressed.",
		}, []string{"stage"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickpipe_ingest_panics_recovered_total", Help: "Handler panics recovered and answered 503.",
		}),
		liveDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickpipe_ingest_live_dropped_events_total", Help: "Live-event deliveries dropped for slow subscribers.",
		}),
		liveSubs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickpipe_ingest_live_subscribers", Help: "Connected live-event subscribers.",
		}),
		publishFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickpipe_ingest_publish_errors_total", Help: "Failed publishes by stream (events, failed).",
		}, []string{"stream"}),
		connRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickpipe_ingest_connections_rejected_total", Help: "Connections closed at once because their peer address held max_connections_per_ip.",
		}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickpipe_ingest_suppressed_total",
			Help: "Events not stored because their userId, anonymousId or previousId is suppressed (answered as accepted).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.events, m.reqDuration, m.pubDuration, m.msgBytes,
		m.msgEvents, m.bytesIn, m.panics, m.liveDropped, m.liveSubs, m.publishFails, m.connRejected, m.suppressed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
