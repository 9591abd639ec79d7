package cmd

import (
	"github.com/prometheus/client_golang/prometheus"
)

// registerDiskMetrics exposes the data directory's filesystem usage, as the
// disk watermark last measured it.
func (n *node) registerDiskMetrics() {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	n.reg.MustRegister(
		gauge("clickpipe_disk_free_bytes", "Free bytes on the data directory's filesystem.",
			func() float64 { return float64(n.disk.Usage().Free) }),
		gauge("clickpipe_disk_total_bytes", "Size of the data directory's filesystem.",
			func() float64 { return float64(n.disk.Usage().Total) }),
		gauge("clickpipe_disk_floor_bytes", "Free-space floor below which ingest answers 503.",
			func() float64 { return float64(n.cfg.Disk.Floor(n.disk.Usage().Total)) }),
	)
}

// readinessCollector exports /readyz as metrics, so that alerts can name
// the failing check: clickpipe_ready and clickpipe_readiness_check{check}.
type readinessCollector struct {
	n            *node
	ready, check *prometheus.Desc
}

func (n *node) registerReadinessMetrics() {
	n.reg.MustRegister(&readinessCollector{
		n:     n,
		ready: prometheus.NewDesc("clickpipe_ready", "1 while /readyz answers ready.", nil, nil),
		check: prometheus.NewDesc("clickpipe_readiness_check", "1 while the named readiness check passes.", []string{"check"}, nil),
	})
}

func (c *readinessCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.ready; ch <- c.check }

func (c *readinessCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.n.checks.Status()
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, boolFloat(st.Ready))
	for name, v := range st.Checks {
		ch <- prometheus.MustNewConstMetric(c.check, prometheus.GaugeValue, boolFloat(v == "ok"), name)
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
