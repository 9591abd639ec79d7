package process

import (
	"cmp"
	"slices"

	"github.com/clickpipe/clickpipe/state"
)

// Continue Watching (DOMAIN.md §2 and §6): the latest playhead per asset;
// an asset enters the row after min_watch of credited watch time in the
// current viewing (the session clock's credits, folded and provisional),
// leaves it on completion (position >= complete_ratio of the length,
// credits_start, or Video Playback Completed near the end) or on an
// explicit "Continue Watching Removed"; a completed episode advances its
// series to the next episode when an event of the playback named it;
// livestreams and previews never get an entry; a new start after
// completion or removal restarts the bookmark.

// playback applies a playback event of the user to its asset's bookmark
// and title aggregates. sid is the clickpipe session the event went to.
func (a *applier) playback(us *userSlot, cl *classified, ts int64, sid string) {
	p := cl.p
	asset := a.cfg.clip(p.Asset())
	if asset == "" {
		return
	}
	if cl.kind == kindRemove {
		a.remove(us, asset, a.cfg.clip(p.series()), ts)
		return
	}
	b := us.bookmark(asset)
	t := a.title(asset)
	minute := ts / 60000
	if cl.kind == kindStart {
		t.Starts++
		touchMinute(t, minute, 1, 0)
	}
	if ts < b.LastAt {
		return // out of order: counted above, the newer playhead stays
	}
	if cl.kind == kindStart && (b.Completed || b.RemovedAt != 0 && ts > b.RemovedAt) {
		b.Completed, b.RemovedAt, b.WatchedMs, b.InRow, b.NextOf = false, 0, 0, false, ""
	}
	b.LastAt = ts
	a.describe(b, p)
	switch cl.kind {
	case kindStart, kindResume, kindPlaying, kindBufEnd:
		b.Playing = true
	case kindPause, kindExit, kindComplete, kindBufStart:
		b.Playing = false
	}
	if b.Playing && b.CountedMinute != minute {
		b.CountedMinute = minute
		touchMinute(t, minute, 0, 1)
	}
	playbackID := string(p.PlaybackID)
	if playbackID == "" {
		playbackID = sid
	}
	if b.CompletedIn != playbackID && a.completes(b, cl) {
		b.Completed, b.InRow, b.Playing, b.CompletedIn = true, false, false, playbackID
		t.Completions++
		a.countCompletion(us, sid)
	}
	if b.Completed && b.NextAsset != "" && b.NextAsset != asset {
		a.advanceSeries(us, b, ts)
	}
}

func (a *applier) countCompletion(us *userSlot, sid string) {
	for i := range us.u.Sessions {
		if us.u.Sessions[i].ID == sid {
			us.u.Sessions[i].C.Completions++
			return
		}
	}
}

// describe copies what an event says about the asset onto its bookmark.
func (a *applier) describe(b *state.Bookmark, p *props) {
	if pos, ok := p.PositionMillis(); ok {
		b.PosMs = max(0, pos)
	}
	if n := p.LengthMillis(); n > 0 {
		b.TotalMs = n
	}
	if s := p.series(); s != "" {
		b.Series = a.cfg.clip(s)
	}
	if p.Title != "" {
		b.Title = a.cfg.clip(string(p.Title))
	}
	if n := atoi(p.Season); n > 0 {
		b.Season = n
	}
	if n := atoi(p.Episode); n > 0 {
		b.Episode = n
	}
	if p.Livestream {
		b.Live, b.InRow = true, false
	}
	if n := p.Next; n.Asset != "" {
		b.NextAsset, b.NextTitle = a.cfg.clip(string(n.Asset)), a.cfg.clip(string(n.Title))
		b.NextSeason, b.NextEpisode = atoi(n.Season), atoi(n.Episode)
	}
}

// completes: the position reached complete_ratio of the length or the
// credits, or Video Playback Completed with the position in the last
// (1 - complete_ratio) of the length or no position at all.
func (a *applier) completes(b *state.Bookmark, cl *classified) bool {
	pos, hasPos := cl.p.PositionMillis()
	switch {
	case cl.kind == kindComplete:
		return !hasPos || b.TotalMs <= 0 || float64(pos) >= a.cfg.CompleteRatio*float64(b.TotalMs)
	case cl.p.CredStart > 0 && hasPos && float64(pos) >= cl.p.CredStart*1000:
		return true
	case !isPlayback(cl.kind) || cl.kind == kindAdStart || cl.kind == kindAdEnd:
		return false
	}
	return hasPos && b.TotalMs > 0 && float64(b.PosMs) >= a.cfg.CompleteRatio*float64(b.TotalMs)
}

// advanceSeries puts the next episode of a completed one in the row at
// position 0, unless it was watched later already.
func (a *applier) advanceSeries(us *userSlot, b *state.Bookmark, ts int64) {
	next, from := b.NextAsset, *b
	b.NextAsset = "" // advance once
	n := us.bookmark(next)
	if n.LastAt > ts {
		return
	}
	season, episode := from.NextSeason, from.NextEpisode
	if season == 0 {
		season = from.Season
	}
	if episode == 0 && from.Episode > 0 {
		episode = from.Episode + 1
	}
	*n = state.Bookmark{Asset: next, Series: from.Series, Title: from.NextTitle, Season: season, Episode: episode,
		LastAt: ts, NextOf: from.Asset, InRow: !from.Live}
}

// remove writes the tombstone of an explicit removal (of the asset, and
// of its series' entries).
func (a *applier) remove(us *userSlot, asset, series string, ts int64) {
	for k, b := range us.bm {
		if b.Asset == asset || series != "" && b.Series == series {
			if b.LastAt > ts && b.Asset != asset {
				continue
			}
			b.InRow, b.RemovedAt = false, ts
			us.touchBM(k)
		}
	}
	if b := us.bookmark(asset); b.RemovedAt == 0 {
		b.LastAt, b.RemovedAt = max(b.LastAt, ts), ts
	}
}

// enterRow decides the row membership of the bookmarks this batch
// changed or credited: in the row while not completed, removed or live,
// once the watch time credited in the current viewing (folded plus
// provisional) reaches min_watch, or as the next episode of a series.
// It is a function of the user's state, not of batch boundaries.
func (a *applier) enterRow(us *userSlot, prov map[string]int64) {
	minMs := a.cfg.MinWatch.Milliseconds()
	decide := func(asset string) {
		b := us.bm[asset]
		if b == nil {
			return
		}
		in := !b.Completed && b.RemovedAt == 0 && !b.Live && (b.NextOf != "" || b.WatchedMs+prov[asset] >= minMs)
		if in != b.InRow {
			b.InRow = in
			us.touchBM(asset)
		}
	}
	for asset := range us.dirtyBM {
		decide(asset)
	}
	for asset := range prov {
		if !us.dirtyBM[asset] {
			decide(asset)
		}
	}
}

// trimBookmarks keeps at most max_bookmarks: the row first, then the most
// recent; it trims to 90 % so the sort is paid rarely.
func (a *applier) trimBookmarks(us *userSlot) {
	if len(us.bm) <= a.cfg.MaxBookmarks {
		return
	}
	all := make([]*state.Bookmark, 0, len(us.bm))
	for _, b := range us.bm {
		all = append(all, b)
	}
	slices.SortFunc(all, func(x, y *state.Bookmark) int {
		if x.InRow != y.InRow {
			if x.InRow {
				return -1
			}
			return 1
		}
		if c := cmpInt(y.LastAt, x.LastAt); c != 0 {
			return c
		}
		return cmpStr(x.Asset, y.Asset)
	})
	for _, b := range all[a.cfg.MaxBookmarks*9/10:] {
		delete(us.bm, b.Asset)
		delete(us.dirtyBM, b.Asset)
		us.deadBM = append(us.deadBM, b.Asset)
	}
}

func cmpStr(a, b string) int { return cmp.Compare(a, b) }

// touchMinute counts a start or a viewer in an event-time minute of a
// title, keeping the newest state.TitleMinutes minutes.
func touchMinute(t *state.Title, minute, starts, viewers int64) {
	if n := len(t.Minutes); n > 0 && minute <= t.Minutes[n-1].Minute-state.TitleMinutes {
		return
	}
	i, found := slices.BinarySearchFunc(t.Minutes, minute, func(m state.Minute, x int64) int { return cmpInt(m.Minute, x) })
	if !found {
		t.Minutes = slices.Insert(t.Minutes, i, state.Minute{Minute: minute})
	}
	t.Minutes[i].Starts += starts
	t.Minutes[i].Viewers += viewers
	last := t.Minutes[len(t.Minutes)-1].Minute
	t.Minutes = slices.DeleteFunc(t.Minutes, func(m state.Minute) bool { return m.Minute <= last-state.TitleMinutes })
}
