package ingest

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/clickpipe/clickpipe/internal/jsonscan"
)

// member is one key and value of a JSON object; own tells the item's
// object from the batch's.
type member struct {
	key, value []byte
	own        bool
}

// mergeObjects merges batch-level into item-level JSON objects; the item
// wins on conflicting keys. The result is what mergeObjectsStd produces
// (encoding/json re-marshalling a map: keys sorted, values compacted and
// HTML-escaped), written directly when every key and value is already in
// that form, which is what SDKs send.
func mergeObjects(batch, own json.RawMessage) (json.RawMessage, error) {
	switch {
	case len(batch) == 0:
		return own, nil
	case len(own) == 0 || bytes.Equal(own, []byte("{}")):
		return batch, nil
	}
	var buf [32]member
	ms, ok := appendMembers(buf[:0], own, true)
	if ok {
		ms, ok = appendMembers(ms, batch, false)
	}
	if !ok {
		return mergeObjectsStd(batch, own)
	}
	return encodeMembers(ms), nil
}

// replaceKey sets obj[key] = value (a string) in a JSON object, like
// replaceKeyStd.
func replaceKey(obj json.RawMessage, key, value string) json.RawMessage {
	var buf [32]member
	ms, ok := appendMembers(buf[:0], obj, false)
	if !ok || !canonicalKey([]byte(key)) || !canonicalKey([]byte(value)) {
		return replaceKeyStd(obj, key, value)
	}
	ms = append(ms, member{key: []byte(key), value: []byte(strconv.Quote(value)), own: true})
	return encodeMembers(ms)
}

// appendMembers splits a JSON object into members; false when it is not
// an object or a key or value is not already in encoding/json's output
// form.
func appendMembers(ms []member, obj []byte, own bool) ([]member, bool) {
	s := scanner{jsonscan.Trusted(obj, lenientDepth)}
	if s.Peek() != '{' || !s.Enter() {
		return ms, false
	}
	for n := 0; ; n++ {
		more, ok := s.Next(n, '}')
		if !ok {
			return ms, false
		}
		if !more {
			return ms, s.AtEnd()
		}
		k, flags, ok := s.Key()
		if !ok || flags != 0 || !canonicalKey(k) {
			return ms, false
		}
		v, ok := s.Value()
		if !ok || !canonicalValue(v) {
			return ms, false
		}
		ms = append(ms, member{key: k, value: v, own: own})
	}
}

// encodeMembers writes members as json.Marshal writes a map: sorted by
// key, the last of a repeated key winning, an own member over a batch one.
func encodeMembers(ms []member) []byte {
	slices.SortStableFunc(ms, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	size := 2
	for _, m := range ms {
		size += len(m.key) + len(m.value) + 4
	}
	out := make([]byte, 0, size)
	out = append(out, '{')
	for i := 0; i < len(ms); {
		j, win := i, i
		for ; j < len(ms) && bytes.Equal(ms[j].key, ms[i].key); j++ {
			if ms[j].own || !ms[win].own {
				win = j
			}
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, ms[win].key...)
		out = append(out, '"', ':')
		out = append(out, ms[win].value...)
		i = j
	}
	return append(out, '}')
}

// canonicalKey reports a key that encoding/json writes back unchanged:
// printable ASCII with nothing it escapes.
func canonicalKey(k []byte) bool {
	for _, c := range k {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// canonicalValue reports a value that json.Marshal of a json.RawMessage
// writes back unchanged: no blanks outside strings, none of the
// characters it HTML-escapes (<, >, &) and no U+2028/U+2029.
func canonicalValue(v []byte) bool {
	inString := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"':
			inString = !inString
		case '\\':
			i++ // the escaped byte cannot end the string
		case ' ', '\t', '\n', '\r':
			if !inString {
				return false
			}
		case '<', '>', '&':
			return false
		case 0xe2:
			if i+2 < len(v) && v[i+1] == 0x80 && v[i+2]&^1 == 0xa8 {
				return false
			}
		}
	}
	return true
}

// mergeObjectsStd is mergeObjects through encoding/json: the reference,
// and the path of every unusual object.
func mergeObjectsStd(batch, own json.RawMessage) (json.RawMessage, error) {
	var b, o map[string]json.RawMessage
	if err := json.Unmarshal(batch, &b); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(own, &o); err != nil {
		return nil, err
	}
	for k, v := range b {
		if _, ok := o[k]; !ok {
			o[k] = v
		}
	}
	return json.Marshal(o)
}
