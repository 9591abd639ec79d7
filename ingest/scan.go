package ingest

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// scanner walks JSON text in one pass without building anything: the fast
// path of request and item decoding. In strict mode it checks everything
// that makes a request acceptable (the JSON grammar as encoding/json reads
// it, valid UTF-8 inside strings, the nesting cap); otherwise it trusts text
// a strict pass already checked and only finds boundaries. Every step is
// bounds-checked: malformed input makes it report false, never panic. A
// false answer is not a verdict: callers then take the encoding/json path,
// which produces the catalogue error.
type scanner struct {
	b        []byte
	i        int
	depth    int
	maxDepth int
	strict   bool
}

// lenientDepth bounds recursion when scanning already-validated items.
const lenientDepth = 1 << 10

// String flags returned by str.
const (
	strEscaped  = 1 << iota // contains a backslash escape
	strNonASCII             // contains bytes >= 0x80
)

// plainByte marks ASCII bytes that may appear unescaped in a string and
// need no attention: everything from 0x20 to 0x7f except '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next byte, 0 at the end.
func (s *scanner) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// value consumes one value of any kind.
func (s *scanner) value() bool {
	switch c := s.peek(); {
	case c == '{':
		return s.skipComposite('}', true)
	case c == '[':
		return s.skipComposite(']', false)
	case c == '"':
		_, _, ok := s.str()
		return ok
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	default:
		return s.number()
	}
}

// skipComposite consumes an object (keys true) or array.
func (s *scanner) skipComposite(end byte, keys bool) bool {
	if !s.enter() {
		return false
	}
	for n := 0; ; n++ {
		more, ok := s.next(n, end)
		if !ok {
			return false
		}
		if !more {
			return true
		}
		if keys {
			if _, _, ok := s.key(); !ok {
				return false
			}
		}
		if !s.value() {
			return false
		}
	}
}

// enter consumes '{' or '[' and counts the depth.
func (s *scanner) enter() bool {
	s.depth++
	if s.depth > s.maxDepth {
		return false
	}
	s.i++
	return true
}

// next moves to element n of the object or array being read (after its
// opening bracket for n == 0, after the previous value otherwise). It
// reports false for more at the closing bracket, which it consumes.
func (s *scanner) next(n int, end byte) (more, ok bool) {
	s.ws()
	c := s.peek()
	if c == end {
		s.i++
		s.depth--
		return false, true
	}
	if n > 0 {
		if c != ',' {
			return false, false
		}
		s.i++
		s.ws()
		c = s.peek()
	}
	if c == 0 || c == end {
		return false, false // end of input, or a trailing comma
	}
	return true, true
}

// key consumes an object key and its colon, and the blanks before the value.
func (s *scanner) key() (k []byte, flags int, ok bool) {
	if s.peek() != '"' {
		return nil, 0, false
	}
	tok, flags, ok := s.str()
	if !ok {
		return nil, 0, false
	}
	s.ws()
	if s.peek() != ':' {
		return nil, 0, false
	}
	s.i++
	s.ws()
	return tok[1 : len(tok)-1], flags, true
}

// str consumes a string and returns it with its quotes.
func (s *scanner) str() (tok []byte, flags int, ok bool) {
	start := s.i
	s.i++
	for s.i < len(s.b) {
		s.skipPlain()
		if s.i >= len(s.b) {
			break
		}
		c := s.b[s.i]
		if plainByte[c] {
			s.i++
			continue
		}
		switch {
		case c == '"':
			s.i++
			return s.b[start:s.i], flags, true
		case c == '\\':
			flags |= strEscaped
			if !s.escape() {
				return nil, 0, false
			}
		case c < 0x20:
			return nil, 0, false
		default:
			flags |= strNonASCII
			if !s.strict {
				s.i++
				continue
			}
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 {
				return nil, 0, false
			}
			s.i += size
		}
	}
	return nil, 0, false
}

// skipPlain skips string bytes that need no attention eight at a time,
// stopping at the first '"', '\\', control or non-ASCII byte (or near the end).
func (s *scanner) skipPlain() {
	for s.i+8 <= len(s.b) {
		m := specialBytes(binary.LittleEndian.Uint64(s.b[s.i:]))
		if m != 0 {
			s.i += bits.TrailingZeros64(m) >> 3
			return
		}
		s.i += 8
	}
}

const (
	lsbs = 0x0101010101010101
	msbs = 0x8080808080808080
)

// specialBytes has the high bit set in the lowest byte of w (and maybe in
// higher ones) that is '"', '\\', below 0x20 or above 0x7f; zero if none is.
// A byte equal to x is found as a zero byte of w^x: (v-1)&^v sets its high
// bit, and borrows can only mark bytes above a true match.
func specialBytes(w uint64) uint64 {
	q := w ^ (lsbs * '"')
	b := w ^ (lsbs * '\\')
	return ((q-lsbs)&^q | (b-lsbs)&^b | (w - lsbs*0x20) | w) & msbs
}

// escape consumes a backslash escape.
func (s *scanner) escape() bool {
	if s.i+1 >= len(s.b) {
		return false
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return true
	case 'u':
		if s.i+6 > len(s.b) {
			return false
		}
		for _, h := range s.b[s.i+2 : s.i+6] {
			if !isHex(h) {
				return false
			}
		}
		s.i += 6
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (s *scanner) lit(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// number consumes a number: the JSON grammar when strict, otherwise the
// run of number characters.
func (s *scanner) number() bool {
	start := s.i
	if !s.strict {
		for s.i < len(s.b) && isNumByte(s.b[s.i]) {
			s.i++
		}
		return s.i > start
	}
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits consumes one or more digits.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

func isNumByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// rawValue consumes one value and returns its bytes.
func (s *scanner) rawValue() ([]byte, bool) {
	start := s.i
	if !s.value() {
		return nil, false
	}
	return s.b[start:s.i], true
}

// atEnd reports whether only blanks remain.
func (s *scanner) atEnd() bool {
	s.ws()
	return s.i == len(s.b)
}

// matchKey finds k among names, the fields of the struct encoding/json
// would decode into. It returns -1 for a key encoding/json ignores, and
// false when encoding/json's rules would need care this fast path does not
// take: escapes or non-ASCII in the key, or a key that equals a field name
// only case-insensitively (encoding/json matches those too).
func matchKey(k []byte, flags int, names []string) (int, bool) {
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
