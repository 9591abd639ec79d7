package loadgen

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// progress prints one line per second until stop closes.
func (r *Runner) progress(start time.Time, stop <-chan struct{}) {
	if r.cfg.Progress == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	prevLat := r.c.attempt.snapshot()
	prevAcked := r.c.ackedEvents.Load()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		lat := r.c.attempt.snapshot()
		acked := r.c.ackedEvents.Load()
		win := diff(lat, prevLat)
		fmt.Fprintf(r.cfg.Progress, "%4.0fs sent=%d acked=%d rate=%.0f/s p50=%s p99=%s retries=%d status[%s]\n",
			time.Since(start).Seconds(), r.c.sentEvents.Load(), acked, float64(acked-prevAcked),
			ms(quantile(win, 0.5)), ms(quantile(win, 0.99)), r.c.retries.Load(),
			statusLine(statusMap(&r.c.status, r.c.netErrors.Load())))
		prevLat, prevAcked = lat, acked
	}
}

func ms(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2fms", v)
}

func statusLine(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// WriteText writes the report for people.
func (rep *Report) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, `loadgen %s against %s (%s shape, %d connections, batch %d)
  duration      %.1fs
  events        sent %d, acknowledged %d, failed %d
  throughput    %.0f events/s acknowledged, %.0f requests/s
  requests      %d (%d acknowledged), retries %d
  latency       p50 %s  p90 %s  p99 %s  p99.9 %s  max %s (per attempt)
  end-to-end    p50 %s  p99 %s (scheduled send to acknowledgement)
  status        %s
  simulated     %s .. %s
`, rep.Mode, rep.Target, rep.Shape, rep.Connections, rep.BatchSize, rep.Seconds,
		rep.EventsSent, rep.EventsAcked, rep.EventsFailed, rep.EventsPerSec, rep.RequestsPerSec,
		rep.Requests, rep.RequestsAcked, rep.Retries,
		ms(rep.Latency.P50), ms(rep.Latency.P90), ms(rep.Latency.P99), ms(rep.Latency.P999), ms(rep.Latency.Max),
		ms(rep.EndToEnd.P50), ms(rep.EndToEnd.P99), statusLine(rep.Status),
		rep.SimStart.UTC().Format(time.RFC3339), rep.SimEnd.UTC().Format(time.RFC3339))
	if err == nil && rep.TargetEvents > 0 {
		_, err = fmt.Fprintf(w, "  offered       %d of %d scheduled events sent (%.0f %%)\n", rep.EventsSent, rep.TargetEvents,
			100*float64(rep.EventsSent)/float64(rep.TargetEvents))
	}
	if err == nil && rep.EventsClamped > 0 {
		_, err = fmt.Fprintf(w, "  clamped       %d events stamped with the wall clock (simulated time caught up; raise --users)\n", rep.EventsClamped)
	}
	if err == nil && rep.Hostile > 0 {
		_, err = fmt.Fprintf(w, "  hostile       %d requests: %s\n", rep.Hostile, statusLine(rep.HostileStatus))
	}
	if err == nil && rep.Witness != "" {
		_, err = fmt.Fprintf(w, "  witness       %s\n", rep.Witness)
	}
	return err
}
