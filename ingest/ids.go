package ingest

import (
	"encoding/json"

	"github.com/clickpipe/clickpipe/event"
	"github.com/clickpipe/clickpipe/internal/jsonscan"
)

// IDChecker returns nil when an id or name is acceptable under a length cap
// of max bytes. event.CheckID is the production rule (no control
// characters, the cap); Deps.CheckID lets the composition root substitute
// it, which the reliability suite's negative control does.
type IDChecker func(id string, max int) error

const nAssetFields = 4

// assetFields are the properties that the sessionizer turns into
// serving-state keys (title aggregates, Continue Watching).
var assetFields = [nAssetFields]string{"content_asset_id", "asset_id", "series_id", "next_episode_asset_id"}

// checkIDs rejects an event whose ids or names would be unsafe as parts of
// a serving-state key: a control character (NUL would let one id fall
// under another's key prefix) or a length past its cap. Called before a
// messageId is generated, so only a client-sent one is checked.
func (n *normaliser) checkIDs(ev *event.Event) *invalidItem {
	check := n.checkID
	if check == nil {
		check = event.CheckID
	}
	ids := [...]struct {
		field, value string
		max          int
	}{
		{"messageId", ev.MessageID, n.cfg.MaxIDBytes},
		{"userId", ev.UserID, n.cfg.MaxIDBytes},
		{"anonymousId", ev.AnonymousID, n.cfg.MaxIDBytes},
		{"previousId", ev.PreviousID, n.cfg.MaxIDBytes},
		{"groupId", ev.GroupID, n.cfg.MaxIDBytes},
		{"event", ev.Event, n.cfg.MaxNameBytes},
		{"name", ev.Name, n.cfg.MaxNameBytes},
	}
	for _, id := range ids {
		if err := check(id.value, id.max); err != nil {
			return badID(id.field, err, ev.MessageID)
		}
	}
	if len(ev.Properties) == 0 {
		return nil
	}
	for i, v := range propertyIDs(ev.Properties) {
		if v == "" {
			continue
		}
		if err := check(v, n.cfg.MaxIDBytes); err != nil {
			return badID("properties."+assetFields[i], err, ev.MessageID)
		}
	}
	return nil
}

// badID is the failed-stream entry for an unsafe id. The detail names the
// field and the rule, never the id itself (it may hold control bytes).
func badID(field string, err error, messageID string) *invalidItem {
	if field == "messageId" {
		messageID = ""
	}
	return &invalidItem{reason: event.ReasonInvalidID, detail: field + ": " + err.Error(), messageID: messageID}
}

// propertyIDs returns the values of assetFields in props (strings or
// numbers as text; later duplicates overwrite earlier ones, like
// encoding/json), empty when absent.
func propertyIDs(props json.RawMessage) [nAssetFields]string {
	var out [nAssetFields]string
	if scanPropertyIDs(props, &out) {
		return out
	}
	var p struct {
		ContentAssetID flexID `json:"content_asset_id"`
		AssetID        flexID `json:"asset_id"`
		SeriesID       flexID `json:"series_id"`
		NextEpisode    flexID `json:"next_episode_asset_id"`
	}
	if err := json.Unmarshal(props, &p); err != nil {
		// Not an object, or an asset id of another type than string or
		// number: the sessionizer reads no asset id from it either.
		return out
	}
	return [...]string{string(p.ContentAssetID), string(p.AssetID), string(p.SeriesID), string(p.NextEpisode)}
}

// scanPropertyIDs is the fast path of propertyIDs; false means "use
// encoding/json".
func scanPropertyIDs(props []byte, out *[nAssetFields]string) bool {
	s := scanner{jsonscan.Trusted(props, lenientDepth)}
	s.WS()
	if s.Peek() != '{' || !s.Enter() {
		return false
	}
	for n := 0; ; n++ {
		more, ok := s.Next(n, '}')
		if !ok {
			return false
		}
		if !more {
			return s.AtEnd()
		}
		k, flags, ok := s.Key()
		if !ok {
			return false
		}
		idx, ok := matchKey(k, flags, assetFields[:])
		if !ok {
			return false
		}
		if idx < 0 {
			if _, ok := s.Value(); !ok {
				return false
			}
			continue
		}
		var id flexID
		if !s.idField(&id) {
			return false
		}
		out[idx] = string(id)
	}
}
