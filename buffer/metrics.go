package buffer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descMsgs  = prometheus.NewDesc("clickpipe_buffer_stream_messages", "Messages in the stream.", []string{"stream"}, nil)
	descBytes = prometheus.NewDesc("clickpipe_buffer_stream_bytes", "Bytes in the stream.", []string{"stream"}, nil)
	descMax   = prometheus.NewDesc("clickpipe_buffer_stream_max_bytes", "Configured stream byte budget.", []string{"stream"}, nil)
	descFirst = prometheus.NewDesc("clickpipe_buffer_stream_first_sequence", "First sequence in the stream.", []string{"stream"}, nil)
	descLast  = prometheus.NewDesc("clickpipe_buffer_stream_last_sequence", "Last sequence in the stream.", []string{"stream"}, nil)
	// Cluster mode only: replication as the stream's leader reports it.
	descLeader = prometheus.NewDesc("clickpipe_buffer_stream_has_leader",
		"1 when the replicated stream has a leader (cluster mode).", []string{"stream"}, nil)
	descLag = prometheus.NewDesc("clickpipe_buffer_stream_replica_lag",
		"Operations a follower of the stream is behind its leader (cluster mode).", []string{"stream", "peer"}, nil)
	descCurrent = prometheus.NewDesc("clickpipe_buffer_stream_replica_current",
		"1 when a follower of the stream is caught up with its leader (cluster mode).", []string{"stream", "peer"}, nil)
	descSeen = prometheus.NewDesc("clickpipe_buffer_stream_replica_seen_seconds",
		"Seconds since the stream's leader last heard from a follower (cluster mode).", []string{"stream", "peer"}, nil)
)

// streamCollector reads stream state at scrape time.
type streamCollector struct{ b *Buffer }

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMsgs, descBytes, descMax, descFirst, descLast, descLeader, descLag, descCurrent, descSeen} {
		ch <- d
	}
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range []string{EventsStream, FailedStream, SessionsStream} {
		st, err := c.b.State(ctx, name)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descMsgs, prometheus.GaugeValue, float64(st.Messages), name)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(st.Bytes), name)
		ch <- prometheus.MustNewConstMetric(descMax, prometheus.GaugeValue, float64(st.MaxBytes), name)
		ch <- prometheus.MustNewConstMetric(descFirst, prometheus.GaugeValue, float64(st.FirstSeq), name)
		ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, float64(st.LastSeq), name)
		if c.b.Replicas() <= 1 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descLeader, prometheus.GaugeValue, boolGauge(st.Leader != ""), name)
		for _, r := range st.Replicas {
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(r.Lag), name, r.Peer)
			ch <- prometheus.MustNewConstMetric(descCurrent, prometheus.GaugeValue, boolGauge(r.Current), name, r.Peer)
			ch <- prometheus.MustNewConstMetric(descSeen, prometheus.GaugeValue, r.Seen.Seconds(), name, r.Peer)
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// natsLogger forwards the embedded server's log lines to slog.
type natsLogger struct{ log *slog.Logger }

var _ server.Logger = (*natsLogger)(nil)

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.log.Error(sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Error(sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  {}

func sprintf(format string, v ...any) string { return fmt.Sprintf(format, v...) }
