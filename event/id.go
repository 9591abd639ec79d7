package event

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrControlChar is returned by CheckID for an id holding a control
// character (C0, DEL or C1), NUL included: serving-state keys and log lines
// must never see one.
var ErrControlChar = errors.New("event: control character in id")

// CheckID returns nil when id is at most max bytes long (max <= 0: no cap)
// and holds no control character. Invalid UTF-8 is reported too, although
// ingest rejects it earlier.
func CheckID(id string, max int) error {
	if max > 0 && len(id) > max {
		return fmt.Errorf("event: id of %d bytes, limit %d", len(id), max)
	}
	for i := 0; i < len(id); {
		c := id[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return fmt.Errorf("%w: byte 0x%02x at offset %d", ErrControlChar, c, i)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(id[i:])
		if r == utf8.RuneError && n == 1 {
			return fmt.Errorf("event: invalid UTF-8 at offset %d", i)
		}
		if r >= 0x80 && r <= 0x9f {
			return fmt.Errorf("%w: U+%04X at offset %d", ErrControlChar, r, i)
		}
		i += n
	}
	return nil
}

// MaxKeyIDBytes bounds the source and messageId that key the dedup index:
// an event whose source or messageId fails CheckID under it cannot be
// deduplicated, so the sessionizer skips it and the archive sends it to
// the failed table, and the two agree.
const MaxKeyIDBytes = 4096
