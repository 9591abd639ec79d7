package event

import "time"

// Session is one user session as the sessionizer closes it and the lake
// stores it. Durations are in milliseconds. Version grows when a late event
// changes an already closed session; readers keep the highest version per
// SessionID.
type Session struct {
	SessionID string `json:"sessionId"`
	Version   int    `json:"version"`
	UserKey   string `json:"userKey"`
	Source    string `json:"source,omitempty"`
	Platform  string `json:"platform,omitempty"`
	// Platforms lists every platform the session's events came from, in
	// order of first appearance (Platform is the first).
	Platforms   []string  `json:"platforms,omitempty"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	DurationMs  int64     `json:"durationMs"`
	Events      int       `json:"events"`
	BrowseCount int       `json:"browseCount"`
	Searches    int       `json:"searches"`
	Plays       int       `json:"plays"`
	Pauses      int       `json:"pauses"`
	PauseMs     int64     `json:"pauseMs"`
	Seeks       int       `json:"seeks"`
	Rebuffers   int       `json:"rebuffers"`
	RebufferMs  int64     `json:"rebufferMs"`
	WatchMs     int64     `json:"watchMs"`
	// Completions counts playback completions (not previews).
	Completions int `json:"completions"`
	// ClicksToPlay and TimeToPlayMs are -1 when the session had no play.
	ClicksToPlay int   `json:"clicksToPlay"`
	TimeToPlayMs int64 `json:"timeToPlayMs"`
	// ScreensBeforePlay is the screen sequence before the first play.
	ScreensBeforePlay []string `json:"screensBeforePlay,omitempty"`
	BrowseAbandon     bool     `json:"browseAbandon"`
	// ClosedBy is "gap", "max_length" or "late_split".
	ClosedBy string `json:"closedBy,omitempty"`
	// MergedInto is set on the last version of a session that a late
	// event merged into another one (SessionID of that one): readers drop
	// it.
	MergedInto string `json:"mergedInto,omitempty"`
}
