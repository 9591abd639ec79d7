package main

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// burst is the end-to-end cost of an event (issue 10): a closed-loop
// burst of 100-event batches from 32 connections, then the catch-up until
// the lake has committed everything the burst stored (the archive waits
// for the sessionizer, so the sessionizer is done too). The server's CPU
// over burst plus catch-up, divided by the events acknowledged, is what
// an event costs; the burst window alone would leave the consumers' work
// behind uncounted.
func (s *suite) burst(ctx context.Context) error {
	order := []string{"events_per_sec", "cpu_us_per_event", "burst_cpu_us_per_event", "catchup_s", "rss_mib", "p99_ms",
		"users_in_state", "user_bytes_p50", "user_bytes_p99", "user_bytes_max"}
	for _, users := range s.o.burstUsers {
		var runs []map[string]float64
		for i := range s.o.runs {
			profile := ""
			if i == 0 {
				profile = fmt.Sprintf("burst-%dusers", users)
			}
			m, err := s.burstRun(ctx, int64(200+i), users, profile)
			if err != nil {
				return err
			}
			runs = append(runs, m)
		}
		s.add("burst", collect(fmt.Sprintf("%d users, %s burst + catch-up, fsync, archive on", users, s.o.burstFor), order, runs))
	}
	return nil
}

func (s *suite) burstRun(ctx context.Context, seed int64, users int, profile string) (map[string]float64, error) {
	bin, err := s.binary()
	if err != nil {
		return nil, err
	}
	srv, err := startServer(ctx, bin, "CLICKPIPE_ARCHIVE_FLUSH_INTERVAL=5s")
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	c := s.loadCfg(srv, seed)
	c.Duration = s.o.burstFor
	c.Population.Users, c.Population.ActiveSessions = users, min(users, c.Population.ActiveSessions)
	c.Population.WallClock, c.Population.Accelerated = false, true
	// As fast as the server takes it: simulated time runs ahead of the
	// wall clock, so it starts two hours back and stays in the past.
	c.Population.Start = time.Now().Add(-2 * time.Hour)
	cpu0 := srv.cpuSeconds()
	var prof sync.WaitGroup
	defer prof.Wait() // before the deferred stop
	if profile != "" {
		prof.Go(func() { s.profileFor(ctx, srv, profile, s.o.burstFor+10*time.Second) })
	}
	rep, err := runLoad(ctx, c)
	if err != nil {
		return nil, err
	}
	loadEnd := time.Now()
	cpuBurst := srv.cpuSeconds() - cpu0
	last, _ := srv.metric(ctx, `clickpipe_buffer_stream_last_sequence{stream="EVENTS"}`)
	catchup := math.NaN()
	// Caught up: the lake committed the stream's end and the sessionizer
	// applied (or dropped as duplicates) every acknowledged event.
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline) && ctx.Err() == nil; {
		done, ok := srv.metric(ctx, `clickpipe_archive_committed_sequence{table="events"}`)
		applied, _ := srv.metric(ctx, `clickpipe_process_events_total{result="applied"}`)
		dups, _ := srv.metric(ctx, `clickpipe_process_events_total{result="duplicate"}`)
		if ok && done >= last && applied+dups >= float64(rep.EventsAcked) {
			catchup = time.Since(loadEnd).Seconds()
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if math.IsNaN(catchup) {
		s.note(fmt.Sprintf("burst %d users: not caught up within 5 minutes", users))
	}
	cpu := srv.cpuSeconds() - cpu0
	n := math.Max(float64(rep.EventsAcked), 1)
	m := map[string]float64{
		"events_per_sec": rep.EventsPerSec, "p99_ms": rep.Latency.P99,
		"cpu_us_per_event": cpu / n * 1e6, "burst_cpu_us_per_event": cpuBurst / n * 1e6,
		"catchup_s": catchup, "rss_mib": srv.rssMiB(),
	}
	prof.Wait()
	srv.halt()
	if p50, p99, mx, nu, err := userBytes(srv.dataDir); err == nil {
		m["user_bytes_p50"], m["user_bytes_p99"], m["user_bytes_max"], m["users_in_state"] = p50, p99, mx, float64(nu)
	} else {
		s.note(fmt.Sprintf("burst %d users: measuring state: %v", users, err))
	}
	return m, nil
}
