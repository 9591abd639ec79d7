package jsonscan

import (
	"strconv"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Text consumes a string and returns its value as encoding/json decodes it
// into a string: escapes decoded, invalid UTF-8 replaced by U+FFFD.
func (s *Scanner) Text() (string, bool) {
	raw, flags, ok := s.Str()
	if !ok {
		return "", false
	}
	if flags == 0 || flags == NonASCII && !s.trusted {
		return string(raw), true
	}
	return Unquote(raw)
}

// Unquote decodes the contents of a string token (without its quotes) as
// encoding/json does; false for an invalid escape or a control character.
func Unquote(raw []byte) (string, bool) {
	if plain(raw) {
		return string(raw), true
	}
	b, ok := AppendUnquoted(make([]byte, 0, len(raw)), raw)
	return string(b), ok
}

// plain reports whether raw needs no decoding: printable ASCII without
// backslashes, or valid UTF-8 without backslashes or control characters.
func plain(raw []byte) bool {
	ascii := true
	for _, c := range raw {
		if c == '\\' || c < 0x20 {
			return false
		}
		ascii = ascii && c < 0x80
	}
	return ascii || utf8.Valid(raw)
}

// AppendUnquoted appends the decoded contents of a string token (without
// its quotes) to dst, as encoding/json decodes them.
func AppendUnquoted(dst, raw []byte) ([]byte, bool) {
	for i := 0; i < len(raw); {
		switch c := raw[i]; {
		case c == '\\':
			if i+1 >= len(raw) {
				return dst, false
			}
			i += 2
			switch raw[i-1] {
			case '"', '\\', '/':
				dst = append(dst, raw[i-1])
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := u4(raw[i-2:])
				if r < 0 {
					return dst, false
				}
				i += 4
				if utf16.IsSurrogate(r) {
					if d := utf16.DecodeRune(r, u4(raw[i:])); d != unicode.ReplacementChar {
						r = d
						i += 6
					} else {
						r = unicode.ReplacementChar
					}
				}
				dst = utf8.AppendRune(dst, r)
			default:
				return dst, false
			}
		case c < 0x20:
			return dst, false
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, unicode.ReplacementChar)
			} else {
				dst = append(dst, raw[i:i+size]...)
			}
			i += size
		}
	}
	return dst, true
}

// u4 decodes a \uXXXX escape at the start of b, -1 if there is none.
func u4(b []byte) rune {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return -1
	}
	return hex4(b[2:6])
}

// Time consumes a string holding an RFC 3339 time, decoded as
// time.Time.UnmarshalJSON does (which never decodes escapes).
func (s *Scanner) Time() (time.Time, bool) {
	var t time.Time
	tok, flags, ok := s.Quoted()
	if !ok || flags != 0 {
		return t, false
	}
	return t, t.UnmarshalJSON(tok) == nil
}

// Float consumes a number as encoding/json decodes it into a float64;
// false when it is out of range.
func (s *Scanner) Float() (float64, bool) {
	lit, ok := s.Number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(lit), 64)
	return v, err == nil
}

// Int consumes a number as encoding/json decodes it into an int64: false
// for a fraction, an exponent or an overflow.
func (s *Scanner) Int() (int64, bool) {
	lit, ok := s.Number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(lit), 10, 64)
	return v, err == nil
}

// Bool consumes true or false.
func (s *Scanner) Bool() (v, ok bool) {
	switch s.Peek() {
	case 't':
		return true, s.Literal("true")
	case 'f':
		return false, s.Literal("false")
	}
	return false, false
}
