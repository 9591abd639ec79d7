package ingest

import (
	"encoding/json"
	"github.com/clickpipe/clickpipe/internal/jsonscan"
)

// itemFields are the keys of item, in the order of the switch in
// itemField; the most frequent first.
var itemFields = []string{
	"type", "event", "userId", "anonymousId", "messageId", "timestamp", "properties", "context",
	"integrations", "traits", "name", "sentAt", "originalTimestamp", "previousId", "groupId",
}

// scanItem decodes raw into it like json.Unmarshal would, reading only
// the fields item has and keeping properties, traits, context and
// integrations as slices of raw. False means "use json.Unmarshal": a
// value of the wrong type (whose error text the failed item keeps), a key
// needing encoding/json's case-insensitive or escaped matching, or text
// that is not an object.
func scanItem(raw []byte, it *item) bool {
	s := scanner{jsonscan.Trusted(raw, lenientDepth)}
	return s.Object(func(k []byte) bool { return s.itemField(k, it) }) && s.AtEnd()
}

func (s *scanner) itemField(k []byte, it *item) bool {
	idx, ok := matchKey(k, 0, itemFields)
	if !ok {
		return false
	}
	switch idx {
	case 0:
		return s.internField(&it.Type, eventTypes)
	case 1:
		return s.strField(&it.Event)
	case 2:
		return s.idField(&it.UserID)
	case 3:
		return s.idField(&it.AnonymousID)
	case 4:
		return s.idField(&it.MessageID)
	case 5:
		return s.strField(&it.Timestamp)
	case 6:
		return s.rawField(&it.Properties)
	case 7:
		return s.rawField(&it.Context)
	case 8:
		return s.rawField(&it.Integrations)
	case 9:
		return s.rawField(&it.Traits)
	case 10:
		return s.strField(&it.Name)
	case 11:
		return s.strField(&it.SentAt)
	case 12:
		return s.strField(&it.OriginalTimestamp)
	case 13:
		return s.idField(&it.PreviousID)
	case 14:
		return s.idField(&it.GroupID)
	}
	return s.Skip()
}

// eventTypes and libraryNames are values common enough to share one
// string instead of allocating one per event.
var (
	eventTypes   = []string{"track", "page", "screen", "identify", "group", "alias"}
	libraryNames = []string{"analytics.js", "analytics-node", "@segment/analytics-node", "analytics-go", "analytics-kotlin", "analytics-swift", "analytics-python", "analytics-ruby", "analytics-java"}
)

// internField is strField returning a string of common when the value is one.
func (s *scanner) internField(dst *string, common []string) bool {
	if s.Peek() != '"' {
		return s.strField(dst)
	}
	tok, flags, ok := s.Quoted()
	if !ok {
		return false
	}
	if flags == 0 {
		for _, c := range common {
			if string(tok[1:len(tok)-1]) == c {
				*dst = c
				return true
			}
		}
	}
	*dst, ok = unquote(tok, flags)
	return ok
}

// uaField is strField taking the string of a cached user agent instead of
// allocating a copy.
func (s *scanner) uaField(dst *string, cache *uaCache) bool {
	if s.Peek() != '"' {
		return s.strField(dst)
	}
	tok, flags, ok := s.Quoted()
	if !ok {
		return false
	}
	if flags == 0 {
		if ua, ok := cache.known(tok[1 : len(tok)-1]); ok {
			*dst = ua
			return true
		}
	}
	*dst, ok = unquote(tok, flags)
	return ok
}

// idField decodes like flexID.UnmarshalJSON: a string, a number kept as
// its text, or null (which clears).
func (s *scanner) idField(dst *flexID) bool {
	switch c := s.Peek(); {
	case c == 'n':
		*dst = ""
		return s.Literal("null")
	case c == '"':
		var v string
		if !s.strField(&v) {
			return false
		}
		*dst = flexID(v)
		return true
	case c == '-' || '0' <= c && c <= '9':
		raw, ok := s.Value()
		*dst = flexID(raw)
		return ok
	}
	return false
}

// rawField keeps any value as its bytes, like json.RawMessage (null too).
func (s *scanner) rawField(dst *json.RawMessage) bool {
	raw, ok := s.Value()
	*dst = raw
	return ok
}

// contextFields are the keys of itemContext.
var contextFields = []string{"userAgent", "library", "ip", "device", "os"}

// scanContext decodes ctx into c like json.Unmarshal into itemContext;
// false means "use json.Unmarshal".
func scanContext(ctx []byte, c *itemContext, cache *uaCache) bool {
	s := scanner{jsonscan.Trusted(ctx, lenientDepth)}
	return s.Object(func(k []byte) bool {
		idx, ok := matchKey(k, 0, contextFields)
		if !ok {
			return false
		}
		switch idx {
		case 0:
			return s.uaField(&c.UserAgent, cache)
		case 1:
			return s.nestedString(&c.Library.Name, "name", libraryNames)
		case 2:
			return s.strField(&c.IP)
		case 3:
			return s.nestedString(&c.Device.Type, "type", nil)
		case 4:
			return s.nestedString(&c.OS.Name, "name", nil)
		}
		return s.Skip()
	}) && s.AtEnd()
}

// nestedString decodes an object with one string field of interest into
// dst, like encoding/json into a one-field struct: null leaves it alone,
// and a repeated key decodes into the same struct.
func (s *scanner) nestedString(dst *string, field string, common []string) bool {
	if s.Peek() == 'n' {
		return s.Literal("null")
	}
	names := []string{field}
	return s.Object(func(k []byte) bool {
		switch idx, ok := matchKey(k, 0, names); {
		case !ok:
			return false
		case idx == 0:
			return s.internField(dst, common)
		}
		return s.Skip()
	})
}
