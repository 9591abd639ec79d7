package ingest

import "github.com/clickpipe/clickpipe/internal/jsonscan"

// scanner is the shared JSON scanner with ingest's field readers as
// methods (decode.go, item.go). Strict scans check whole requests; the
// items and objects cut from an accepted request are scanned trusted.
type scanner struct{ jsonscan.Scanner }

// lenientDepth bounds recursion when scanning already-validated items.
const lenientDepth = 1 << 10

// matchKey finds k among names, the fields of the struct encoding/json
// would decode into. It returns -1 for a key encoding/json ignores, and
// false when encoding/json's rules would need care this fast path does not
// take: escapes or non-ASCII in the key, or a key that equals a field name
// only case-insensitively (encoding/json matches those too).
func matchKey(k []byte, flags jsonscan.Flags, names []string) (int, bool) {
	if flags != 0 {
		return 0, false
	}
	for i, name := range names {
		if string(k) == name {
			return i, true
		}
	}
	for _, name := range names {
		if len(name) == len(k) && asciiEqualFold(k, name) {
			return 0, false
		}
	}
	return -1, true
}

func asciiEqualFold(b []byte, s string) bool {
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
