// Package jsonscan is the one-pass JSON scanner that ingest, process and
// archive share for their fast paths. It reads text in place and builds
// nothing it is not asked for: callers validate and skip values, capture
// raw values, or extract the members they need as typed values.
//
// Every method is bounds-checked and reports false, never panics, both for
// invalid JSON and for JSON a caller should leave to encoding/json (a key
// with escapes, nesting past the depth cap). A false answer is therefore
// not a verdict: callers take their encoding/json path, which gives the
// reference result or error.
//
// A Strict scanner checks everything encoding/json's grammar checks, plus
// valid UTF-8 inside strings (encoding/json would silently replace it). A
// Trusted scanner reads text a strict pass has already checked and only
// finds boundaries: numbers are runs of number characters and string bytes
// above 0x7f are not decoded.
package jsonscan

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// Flags describe a scanned string.
type Flags uint8

// String flags.
const (
	Escaped  Flags = 1 << iota // contains a backslash escape
	NonASCII                   // contains bytes >= 0x80
)

// Scanner reads one JSON text. The zero value scans nothing; use Strict or
// Trusted. Methods skip blanks before the token they read.
type Scanner struct {
	b        []byte
	i        int
	depth    int
	maxDepth int
	trusted  bool
}

// Strict returns a scanner that checks the grammar and UTF-8 of b and
// refuses objects and arrays nested deeper than maxDepth.
func Strict(b []byte, maxDepth int) Scanner { return Scanner{b: b, maxDepth: maxDepth} }

// Trusted returns a scanner over text a Strict scan already accepted; it
// only finds boundaries (see the package documentation).
func Trusted(b []byte, maxDepth int) Scanner {
	return Scanner{b: b, maxDepth: maxDepth, trusted: true}
}

// Pos is the offset of the next unread byte.
func (s *Scanner) Pos() int { return s.i }

// WS skips blanks.
func (s *Scanner) WS() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// Peek skips blanks and returns the next byte, 0 at the end.
func (s *Scanner) Peek() byte {
	if s.i < len(s.b) && s.b[s.i] > ' ' {
		return s.b[s.i] // compact text: no blanks to skip
	}
	s.WS()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// AtEnd reports whether only blanks remain.
func (s *Scanner) AtEnd() bool {
	s.WS()
	return s.i == len(s.b)
}

// Enter consumes the '{' or '[' Peek returned and counts the depth; false
// past the cap.
func (s *Scanner) Enter() bool {
	s.depth++
	if s.depth > s.maxDepth || s.i >= len(s.b) {
		return false
	}
	s.i++
	return true
}

// Next moves to element n of the object or array being read (after its
// opening bracket for n == 0, after the previous value otherwise). It
// reports false for more at the closing bracket end, which it consumes;
// false for ok at a missing comma, a trailing comma or the end of input.
func (s *Scanner) Next(n int, end byte) (more, ok bool) {
	c := s.Peek()
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
		c = s.Peek()
	}
	if c == 0 || c == end {
		return false, false
	}
	return true, true
}

// Key consumes an object key and its colon; k is the key without quotes
// and with its escapes, if any, not yet decoded (see Flags).
func (s *Scanner) Key() (k []byte, flags Flags, ok bool) {
	if s.Peek() != '"' {
		return nil, 0, false
	}
	start := s.i + 1
	if flags, ok = s.str(); !ok {
		return nil, 0, false
	}
	k = s.b[start : s.i-1]
	if s.Peek() != ':' {
		return nil, 0, false
	}
	s.i++
	return k, flags, true
}

// Object reads an object, calling member for each key with the scanner
// before its value; member must consume the value. A key with escapes or
// bytes above 0x7f ends the scan with false (encoding/json matches such
// keys by rules callers should leave to it).
func (s *Scanner) Object(member func(key []byte) bool) bool {
	return s.members(member)
}

// members reads an object for Object (member set, plain keys only) or
// for Skip (member nil, any valid key, values skipped). It inlines Next
// and Key: this loop is the hottest of every caller.
func (s *Scanner) members(member func(key []byte) bool) bool {
	if s.Peek() != '{' || !s.Enter() {
		return false
	}
	if s.Peek() == '}' {
		s.i++
		s.depth--
		return true
	}
	for {
		if s.Peek() != '"' {
			return false
		}
		start := s.i + 1
		flags, ok := s.str()
		if !ok {
			return false
		}
		k := s.b[start : s.i-1]
		if s.Peek() != ':' {
			return false
		}
		s.i++
		if member == nil {
			ok = s.Skip()
		} else {
			ok = flags == 0 && member(k)
		}
		if !ok {
			return false
		}
		switch s.Peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// Array reads an array, calling elem for each element; elem must consume
// it. A nil elem skips the elements.
func (s *Scanner) Array(elem func() bool) bool {
	if s.Peek() != '[' || !s.Enter() {
		return false
	}
	if s.Peek() == ']' {
		s.i++
		s.depth--
		return true
	}
	for {
		ok := false
		if elem == nil {
			ok = s.Skip()
		} else {
			ok = elem()
		}
		if !ok {
			return false
		}
		switch s.Peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return true
		default:
			return false
		}
	}
}

// Skip consumes one value of any kind.
func (s *Scanner) Skip() bool {
	switch c := s.Peek(); c {
	case '{':
		return s.members(nil)
	case '[':
		return s.Array(nil)
	case '"':
		_, ok := s.str()
		return ok
	case 't':
		return s.Literal("true")
	case 'f':
		return s.Literal("false")
	case 'n':
		return s.Literal("null")
	}
	_, ok := s.Number()
	return ok
}

// Value consumes one value and returns its bytes, like json.RawMessage.
func (s *Scanner) Value() ([]byte, bool) {
	s.WS()
	start := s.i
	if !s.Skip() {
		return nil, false
	}
	return s.b[start:s.i], true
}

// Literal consumes word (true, false, null) if it comes next.
func (s *Scanner) Literal(word string) bool {
	s.WS()
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// Str consumes a string and returns its contents without the quotes,
// escapes not decoded.
func (s *Scanner) Str() (raw []byte, flags Flags, ok bool) {
	if s.Peek() != '"' {
		return nil, 0, false
	}
	start := s.i + 1
	if flags, ok = s.str(); !ok {
		return nil, 0, false
	}
	return s.b[start : s.i-1], flags, true
}

// Quoted consumes a string and returns it with its quotes.
func (s *Scanner) Quoted() (tok []byte, flags Flags, ok bool) {
	if s.Peek() != '"' {
		return nil, 0, false
	}
	start := s.i
	flags, ok = s.str()
	if !ok {
		return nil, 0, false
	}
	return s.b[start:s.i], flags, true
}

// plainByte marks ASCII bytes that may appear unescaped in a string and
// need no attention: everything from 0x20 to 0x7f except '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str consumes the string at s.i (its opening quote).
func (s *Scanner) str() (flags Flags, ok bool) {
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
			return flags, true
		case c == '\\':
			flags |= Escaped
			if !s.escape() {
				return 0, false
			}
		case c < 0x20:
			return 0, false
		default:
			flags |= NonASCII
			if s.trusted {
				s.i++
				continue
			}
			r, size := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && size == 1 {
				return 0, false
			}
			s.i += size
		}
	}
	return 0, false
}

// skipPlain skips string bytes that need no attention eight at a time,
// stopping at the first '"', '\\', control or non-ASCII byte (or near the end).
func (s *Scanner) skipPlain() {
	for s.i+8 <= len(s.b) {
		m := SpecialBytes(binary.LittleEndian.Uint64(s.b[s.i:]))
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

// SpecialBytes has the high bit set in the lowest byte of w (eight bytes of
// text, little-endian; maybe in higher ones too) that is '"', '\\', below
// 0x20 or above 0x7f, the bytes a JSON string cannot copy as they are; zero
// if none is. Encoders use it to copy plain runs eight bytes at a time.
// A byte equal to x is found as a zero byte of w^x: (v-1)&^v sets its high
// bit, and borrows can only mark bytes above a true match.
func SpecialBytes(w uint64) uint64 {
	q := w ^ (lsbs * '"')
	b := w ^ (lsbs * '\\')
	return ((q-lsbs)&^q | (b-lsbs)&^b | (w - lsbs*0x20) | w) & msbs
}

// escape consumes a backslash escape.
func (s *Scanner) escape() bool {
	if s.i+1 >= len(s.b) {
		return false
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return true
	case 'u':
		if s.i+6 > len(s.b) || hex4(s.b[s.i+2:s.i+6]) < 0 {
			return false
		}
		s.i += 6
		return true
	}
	return false
}

// hex4 decodes four hex digits, -1 if they are not.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// Number consumes a number and returns its literal: the JSON grammar when
// strict, otherwise the run of number characters.
func (s *Scanner) Number() ([]byte, bool) {
	s.WS()
	start := s.i
	if s.trusted {
		for s.i < len(s.b) && isNumByte(s.b[s.i]) {
			s.i++
		}
		return s.b[start:s.i], s.i > start
	}
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case !s.digits():
		return nil, false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if !s.digits() {
			return nil, false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if !s.digits() {
			return nil, false
		}
	}
	return s.b[start:s.i], true
}

// digits consumes one or more digits.
func (s *Scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

func isNumByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}
