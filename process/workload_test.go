package process_test

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// A seeded clickstream of a few viewers of a streaming service: browse
// screens, searches, previews, playback in the Segment Video Spec
// vocabulary with 10-second heartbeats, pauses, rebuffers, seeks,
// completions that advance a series, removals from Continue Watching. The
// order the buffer sees is the order of arrival: mostly event time, some
// events held back within the allowed lateness, a few beyond it, and SDK
// retries that repeat a messageId.

// catalog entries: series episodes know their successor.
type asset struct {
	id, program, next string
	season, episode   int
	length            float64
}

var catalog = []asset{
	{id: "dark-s1e1", program: "Dark", next: "dark-s1e2", season: 1, episode: 1, length: 900},
	{id: "dark-s1e2", program: "Dark", next: "dark-s1e3", season: 1, episode: 2, length: 900},
	{id: "dark-s1e3", program: "Dark", season: 1, episode: 3, length: 900},
	{id: "film-heat", length: 2400},
	{id: "film-ran", length: 3000},
}

type workload struct {
	rng    *rand.Rand
	n      int
	prefix string // of user keys and messageIds, to make workloads disjoint
	events []arrival
	// perMessage bounds the events of one group-commit message (default 8).
	perMessage int
}

// arrival is one event and when it reaches the tracking API.
type arrival struct {
	ev event.Event
	at time.Time
}

// viewer is the generator's memory of one user.
type viewer struct {
	key, source, platform string
	anonymous             bool
	// anonID, until identified, is the anonymousId the viewer browses
	// under before an identify links it to key.
	anonID     string
	identified bool
	position   map[string]float64
	series     int // index of the next Dark episode
	playback   int
}

func newWorkload(seed uint64, users int, t0 time.Time) *workload {
	return newPrefixedWorkload(seed, users, t0, "")
}

func newPrefixedWorkload(seed uint64, users int, t0 time.Time, prefix string) *workload {
	w := &workload{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), prefix: prefix}
	for i := range users {
		v := &viewer{key: fmt.Sprintf("%suser-%d", prefix, i), source: []string{"web", "ios"}[i%2],
			platform: []string{"web", "mobile", "tv"}[i%3], anonymous: i == users-1, position: map[string]float64{}}
		if i == users-2 || i == users-3 {
			v.anonID = fmt.Sprintf("%sanon-%d", prefix, i) // browses anonymously, then signs in
		}
		t := t0.Add(w.dur(0, 40*time.Minute))
		for range 2 + w.rng.IntN(3) {
			t = w.session(v, t)
			if v.anonID != "" && !v.identified {
				t = t.Add(w.dur(time.Second, 10*time.Second))
				w.emit(v, t, event.TypeIdentify, "", nil) // carries both ids
				v.identified = true
			}
			if w.rng.IntN(5) == 0 {
				t = t.Add(w.dur(8*time.Minute, 25*time.Minute)) // within the gap: the session goes on
			} else {
				t = t.Add(w.dur(35*time.Minute, 3*time.Hour))
			}
		}
	}
	slices.SortStableFunc(w.events, func(a, b arrival) int { return a.at.Compare(b.at) })
	return w
}

func (w *workload) dur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)+1)).Truncate(time.Millisecond)
}

func (w *workload) chance(p float64) bool { return w.rng.Float64() < p }

// emit records one event with its arrival: mostly at once, sometimes held
// back (within and, rarely, beyond the allowed lateness of 5 minutes),
// sometimes retried by the SDK with the same messageId.
func (w *workload) emit(v *viewer, ts time.Time, typ, name string, props map[string]any) {
	w.n++
	ev := event.Event{MessageID: fmt.Sprintf("%sm-%05d", w.prefix, w.n), Source: v.source, Type: typ,
		Timestamp: ts, OriginalTimestamp: ts, ReceivedAt: ts, Device: event.Device{Platform: v.platform}}
	switch {
	case v.anonymous:
		ev.AnonymousID = v.key
	case v.anonID != "" && !v.identified:
		ev.AnonymousID = v.anonID
		if typ == event.TypeIdentify {
			ev.UserID = v.key
		}
	default:
		ev.UserID = v.key
	}
	if typ == event.TypeTrack {
		ev.Event = name
	} else {
		ev.Name = name
	}
	if props != nil {
		b, _ := json.Marshal(props)
		ev.Properties = b
	}
	var delay time.Duration
	switch r := w.rng.Float64(); {
	case r < 0.01:
		delay = w.dur(12*time.Minute, 40*time.Minute) // too late
	case r < 0.08:
		delay = w.dur(10*time.Second, 3*time.Minute) // out of order, on time
	default:
		delay = w.dur(0, 2*time.Second)
	}
	w.events = append(w.events, arrival{ev: ev, at: ts.Add(delay)})
	if w.chance(0.03) {
		w.events = append(w.events, arrival{ev: ev, at: ts.Add(delay + w.dur(time.Second, 90*time.Second))})
	}
}

// session emits one visit starting at t and returns its end.
func (w *workload) session(v *viewer, t time.Time) time.Time {
	step := func(lo, hi time.Duration) { t = t.Add(w.dur(lo, hi)) }
	w.emit(v, t, event.TypePage, "home", nil)
	for range w.rng.IntN(4) {
		step(3*time.Second, 40*time.Second)
		switch w.rng.IntN(4) {
		case 0:
			w.emit(v, t, event.TypeTrack, "Search Performed", map[string]any{"query": "dark", "result_count": 7})
		case 1:
			w.emit(v, t, event.TypeTrack, "Title Impression", map[string]any{"row_id": "trending", "row_position": 2})
		case 2:
			w.emit(v, t, event.TypePage, "title", map[string]any{"path": "/title"})
		default:
			w.emit(v, t, event.TypeScreen, "search", nil)
		}
	}
	if w.chance(0.15) {
		step(2*time.Second, 10*time.Second)
		pv := map[string]any{"content_asset_id": "trailer-ran", "content_type": "preview", "position": 0}
		w.emit(v, t, event.TypeTrack, "Video Playback Started", pv)
		step(10*time.Second, 30*time.Second)
		pv["position"] = 20
		w.emit(v, t, event.TypeTrack, "Video Content Playing", pv)
	}
	if w.chance(0.8) {
		step(2*time.Second, 20*time.Second)
		t = w.play(v, t)
	}
	if w.chance(0.08) {
		step(5*time.Second, 30*time.Second)
		w.emit(v, t, event.TypeTrack, "Continue Watching Removed", map[string]any{"asset_id": w.pick(v).id})
	}
	return t
}

func (w *workload) pick(v *viewer) asset {
	if v.series < 3 && w.chance(0.6) {
		return catalog[v.series]
	}
	return catalog[3+w.rng.IntN(2)]
}

// play emits one playback session of a title, resuming where the viewer
// left it, and returns when it ended.
func (w *workload) play(v *viewer, t time.Time) time.Time {
	a := w.pick(v)
	v.playback++
	pos := v.position[a.id]
	props := func() map[string]any {
		p := map[string]any{"content_asset_id": a.id, "session_id": fmt.Sprintf("%s-pb%d", v.key, v.playback),
			"position": pos, "total_length": a.length, "livestream": false}
		if a.program != "" {
			p["program"], p["season"], p["episode"] = a.program, fmt.Sprint(a.season), a.episode
			if a.next != "" {
				p["next_episode_asset_id"] = a.next
			}
		}
		return p
	}
	w.emit(v, t, event.TypeTrack, "Video Playback Started", props())
	w.emit(v, t.Add(time.Second), event.TypeTrack, "Video Content Started", props())
	end := t.Add(w.dur(time.Minute, 12*time.Minute))
	for t.Before(end) && pos < a.length {
		t, pos = t.Add(10*time.Second), pos+10
		w.emit(v, t, event.TypeTrack, "Video Content Playing", props())
		switch r := w.rng.Float64(); {
		case r < 0.03:
			w.emit(v, t, event.TypeTrack, "Video Playback Paused", props())
			t = t.Add(w.dur(20*time.Second, 3*time.Minute))
			w.emit(v, t, event.TypeTrack, "Video Playback Resumed", props())
		case r < 0.05:
			w.emit(v, t, event.TypeTrack, "Video Playback Buffer Started", props())
			t = t.Add(w.dur(time.Second, 12*time.Second))
			w.emit(v, t, event.TypeTrack, "Video Playback Buffer Completed", props())
		case r < 0.07:
			pos = min(a.length-5, pos+float64(w.rng.IntN(600)))
			t = t.Add(w.dur(time.Second, 3*time.Second))
			w.emit(v, t, event.TypeTrack, "Video Playback Seek Completed", props())
		}
	}
	t = t.Add(w.dur(time.Second, 5*time.Second))
	if pos >= a.length {
		pos = a.length
		w.emit(v, t, event.TypeTrack, "Video Content Completed", props())
		w.emit(v, t, event.TypeTrack, "Video Playback Completed", props())
		pos = 0
		if a.program != "" {
			v.series++
		}
	} else {
		w.emit(v, t, event.TypeTrack, "Video Playback Exited", props())
	}
	v.position[a.id] = pos
	return t
}

// message is one group-commit buffer message of a partition.
type message struct {
	partition int
	body      []byte
}

// messages groups the arrivals into group-commit messages of 1 to 8
// events (perMessage) per partition, in arrival order.
func (w *workload) messages(partitions int) []message {
	var out []message
	encs := make([]event.Encoder, partitions)
	limit := make([]int, partitions)
	flush := func(p int) {
		if encs[p].Count() > 0 {
			out = append(out, message{partition: p, body: slices.Clone(encs[p].Bytes())})
			encs[p].Reset()
		}
		limit[p] = 1 + w.rng.IntN(cmp.Or(w.perMessage, 8))
	}
	for p := range partitions {
		flush(p)
	}
	for i := range w.events {
		p := event.Partition(w.events[i].ev.UserKey(), partitions)
		if err := encs[p].Append(&w.events[i].ev); err != nil {
			panic(err) // a test-built event always encodes
		}
		if encs[p].Count() >= limit[p] {
			flush(p)
		}
	}
	for p := range partitions {
		flush(p)
	}
	return out
}

// distinct are the facts an independent count of the workload gives:
// messageIds (each applied once), and starts of non-preview playback.
func (w *workload) distinct() (ids, starts int) {
	seen := map[string]bool{}
	for _, a := range w.events {
		k := a.ev.Source + "/" + a.ev.MessageID
		if seen[k] {
			continue
		}
		seen[k] = true
		ids++
		if a.ev.Event == "Video Playback Started" && !isPreview(a.ev.Properties) {
			starts++
		}
	}
	return ids, starts
}

func isPreview(props json.RawMessage) bool {
	var p struct {
		ContentType string `json:"content_type"`
	}
	_ = json.Unmarshal(props, &p)
	return p.ContentType == "preview"
}
