package process

import (
	"slices"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// Continue Watching (DOMAIN.md section 2): the latest playhead per asset;
// an asset enters the row after min_watch of playback, leaves it when
// complete (position >= complete_ratio of total_length, credits_start, or a
// completion event), a completed episode advances its series when the
// next episode is known (property next_episode_asset_id), an explicit
// "Continue Watching Removed" writes a tombstone, previews never get here,
// and a new start after completion or removal restarts the bookmark.

// titleTouch collects what an event changes in its asset's aggregates.
type titleTouch struct {
	start, complete, viewer bool
	watchMs, rebufferMs     int64
}

func findBookmark(u *event.UserState, asset string) int {
	return slices.IndexFunc(u.Bookmarks, func(b event.Bookmark) bool { return b.AssetID == asset })
}

// playback applies a playback event at ts to the user's bookmarks and
// returns its effect on the asset's aggregates.
func (c *Config) playback(u *event.UserState, cl *classified, ts time.Time) (string, titleTouch) {
	var tt titleTouch
	asset := cl.p.asset()
	switch cl.kind {
	case kindView, kindSearch, kindBrowse, kindOther: // previews are browse
		return "", tt
	}
	if asset == "" {
		return "", tt
	}
	if cl.kind == kindRemove {
		c.remove(u, asset, cl.p.series(), ts)
		return "", tt
	}
	i := findBookmark(u, asset)
	if i < 0 {
		u.Bookmarks = append(u.Bookmarks, event.Bookmark{AssetID: asset, LastWatchedAt: ts})
		i = len(u.Bookmarks) - 1
	}
	b := &u.Bookmarks[i]
	if cl.kind == kindStart {
		tt.start = true
	}
	if ts.Before(b.LastWatchedAt) {
		return asset, tt // out of order: counted, the newer playhead stays
	}
	if cl.kind == kindStart && (b.Completed || (!b.RemovedAt.IsZero() && ts.After(b.RemovedAt))) {
		b.Completed, b.RemovedAt, b.WatchedMs, b.InRow, b.NextOf = false, time.Time{}, 0, false, ""
	}
	if d := ts.Sub(b.LastWatchedAt); b.Playing && d > 0 {
		tt.watchMs = min(d, c.HeartbeatCap).Milliseconds()
		b.WatchedMs += tt.watchMs
	}
	b.LastWatchedAt = ts
	c.describe(b, cl)
	switch cl.kind {
	case kindBufStart:
		b.BufferingSince, b.Playing = ts, false
	case kindBufEnd:
		if !b.BufferingSince.IsZero() {
			tt.rebufferMs = ts.Sub(b.BufferingSince).Milliseconds()
		}
		b.BufferingSince, b.Playing = time.Time{}, true
	case kindPause, kindExit, kindComplete:
		b.Playing = false
	case kindStart, kindResume, kindPlaying, kindSeek:
		b.Playing = true
	}
	if b.Playing || cl.kind == kindStart {
		if minute := ts.Unix() / 60; b.CountedMinute != minute {
			b.CountedMinute, tt.viewer = minute, true
		}
	}
	if !b.InRow && !b.Completed && b.RemovedAt.IsZero() && b.WatchedMs >= c.MinWatch.Milliseconds() {
		c.enterRow(u, i)
		b = &u.Bookmarks[findBookmark(u, asset)]
	}
	if !b.Completed && c.completes(b, cl) {
		tt.complete = true
		c.complete(u, asset, string(cl.p.NextEpisode), ts)
	}
	return asset, tt
}

func (c *Config) describe(b *event.Bookmark, cl *classified) {
	if cl.p.Position != nil {
		b.PositionMs = int64(*cl.p.Position * 1000)
	}
	if cl.p.TotalLength > 0 {
		b.TotalMs = int64(cl.p.TotalLength * 1000)
	}
	if s := cl.p.series(); s != "" {
		b.SeriesID = s
	}
	if cl.p.Title != "" {
		b.Title = string(cl.p.Title)
	}
	if n := atoi(cl.p.Season); n > 0 {
		b.Season = n
	}
	if n := atoi(cl.p.Episode); n > 0 {
		b.Episode = n
	}
}

func (c *Config) completes(b *event.Bookmark, cl *classified) bool {
	switch {
	case cl.kind == kindComplete:
		return true
	case cl.p.CreditsStart > 0 && cl.p.Position != nil && *cl.p.Position >= cl.p.CreditsStart:
		return true
	}
	return b.TotalMs > 0 && float64(b.PositionMs) >= c.CompleteRatio*float64(b.TotalMs)
}

// enterRow puts bookmark i in the row; a series shows one entry, so other
// episodes of its series leave the row.
func (c *Config) enterRow(u *event.UserState, i int) {
	u.Bookmarks[i].InRow = true
	if s := u.Bookmarks[i].SeriesID; s != "" {
		for j := range u.Bookmarks {
			if j != i && u.Bookmarks[j].SeriesID == s {
				u.Bookmarks[j].InRow = false
			}
		}
	}
}

func (c *Config) complete(u *event.UserState, asset, next string, ts time.Time) {
	i := findBookmark(u, asset)
	b := &u.Bookmarks[i]
	b.Completed, b.InRow, b.Playing = true, false, false
	series := b.SeriesID
	if next == "" || series == "" || next == asset {
		return
	}
	j := findBookmark(u, next)
	if j < 0 {
		u.Bookmarks = append(u.Bookmarks, event.Bookmark{AssetID: next})
		j = len(u.Bookmarks) - 1
	}
	n := &u.Bookmarks[j]
	if n.LastWatchedAt.After(ts) {
		return // the next episode was already watched later
	}
	*n = event.Bookmark{AssetID: next, SeriesID: series, LastWatchedAt: ts, NextOf: asset}
	c.enterRow(u, j)
}

// remove writes the tombstone of an explicit removal.
func (c *Config) remove(u *event.UserState, asset, series string, ts time.Time) {
	for i := range u.Bookmarks {
		b := &u.Bookmarks[i]
		if b.AssetID == asset || (series != "" && b.SeriesID == series) {
			if b.LastWatchedAt.After(ts) && b.AssetID != asset {
				continue
			}
			b.InRow, b.RemovedAt = false, ts
		}
	}
	if findBookmark(u, asset) < 0 {
		u.Bookmarks = append(u.Bookmarks, event.Bookmark{AssetID: asset, LastWatchedAt: ts, RemovedAt: ts})
	}
}

// trimBookmarks keeps the row and the most recent others, at most
// max_bookmarks.
func (c *Config) trimBookmarks(u *event.UserState) {
	if len(u.Bookmarks) <= c.MaxBookmarks {
		return
	}
	slices.SortStableFunc(u.Bookmarks, func(a, b event.Bookmark) int {
		if a.InRow != b.InRow {
			if a.InRow {
				return -1
			}
			return 1
		}
		return b.LastWatchedAt.Compare(a.LastWatchedAt)
	})
	u.Bookmarks = u.Bookmarks[:c.MaxBookmarks]
}

const titleMinutes = 10

// touchTitle adds an event's effect to a title shard.
func touchTitle(t *event.TitleShard, tt titleTouch, ts time.Time) {
	if tt.start {
		t.Starts++
	}
	if tt.complete {
		t.Completions++
	}
	t.WatchMs += tt.watchMs
	t.RebufferMs += tt.rebufferMs
	if !tt.start && !tt.viewer {
		return
	}
	minute := ts.Unix() / 60
	if n := len(t.Minutes); n > 0 && minute <= t.Minutes[n-1].Minute-titleMinutes {
		return
	}
	i, found := slices.BinarySearchFunc(t.Minutes, minute, func(m event.MinuteStats, x int64) int { return cmpInt(m.Minute, x) })
	if !found {
		t.Minutes = slices.Insert(t.Minutes, i, event.MinuteStats{Minute: minute})
	}
	if tt.start {
		t.Minutes[i].Starts++
	}
	if tt.viewer {
		t.Minutes[i].Viewers++
	}
	last := t.Minutes[len(t.Minutes)-1].Minute
	t.Minutes = slices.DeleteFunc(t.Minutes, func(m event.MinuteStats) bool { return m.Minute <= last-titleMinutes })
}
