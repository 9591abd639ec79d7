package cluster

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	members prometheus.Gauge
	held    *prometheus.GaugeVec
	epoch   *prometheus.GaugeVec
	events  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clickpipe_cluster_members",
			Help: "Live cluster members this node sees (entries renewed within the lease ttl)."}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clickpipe_cluster_lease_held",
			Help: "1 while this node holds the lease."}, []string{"lease"}),
		epoch: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clickpipe_cluster_lease_epoch",
			Help: "Epoch (acquiring KV revision) of the lease this node holds or last held."}, []string{"lease"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clickpipe_cluster_lease_events_total",
			Help: "Lease transitions on this node: acquired, released, lost, renew_failed; prepared (ahead of a takeover)."}, []string{"lease", "event"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.members, m.held, m.epoch, m.events} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering cluster metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) acquired(lease string, epoch uint64) {
	m.held.WithLabelValues(lease).Set(1)
	m.epoch.WithLabelValues(lease).Set(float64(epoch))
	m.events.WithLabelValues(lease, "acquired").Inc()
}

func (m *metrics) released(lease string) { m.held.WithLabelValues(lease).Set(0) }

func (m *metrics) event(lease, event string) { m.events.WithLabelValues(lease, event).Inc() }
