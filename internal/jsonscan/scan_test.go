package jsonscan

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

var cases = []string{
	`{"a":1,"b":[true,false,null,"x",-0.5e+3,{}],"c":{"d":"\u00e9\ud83d\ude00\n"}}`,
	` [ 1 , 2 ] `,
	"{ \"a\" :\t1 ,\n\"bc\"\r:{ \"d\" : [ ] } }",
	`"caf` + "\xc3\xa9" + `"`,
	`"bad ` + "\xff" + ` utf8"`,
	`"\ud800 lone \udc00 \ud800\u0041"`,
	`"0123456789abcdef0123456789abcdef\"\\\/\b\f\n\r\t"`,
	`"2026-01-10T18:03:21.25+01:00"`,
	`"2026-01-10T18:03:21\u005a"`,
	`12345678901234567890`,
	`1e400`,
	`-0`,
	`01`, `1.`, `1e`, `-`, `+1`, `.5`, `tru`, `nul`, `"\x"`, `"\u12g4"`, "\"tab\tin\"",
	`{"a":1,}`, `[1,]`, `{"a" 1}`, `{"a":1 "b":2}`, `{1:2}`, `[`, `{"a":`, `"open`,
	`[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]`,
	`{"k\u00e9y":1,"K":2}`,
	``, ` `, `null`, `true x`,
}

func TestStrictMatchesEncodingJSON(t *testing.T) {
	for _, c := range cases {
		check(t, []byte(c))
	}
}

func TestDepthCap(t *testing.T) {
	s := Strict([]byte(`[[[1]]]`), 2)
	require.False(t, s.Skip())
	s = Strict([]byte(`[[[1]]]`), 3)
	require.True(t, s.Skip())
	require.True(t, s.AtEnd())
}

func TestTypedMembers(t *testing.T) {
	in := []byte(`{"s":"a\"b","n":-1.5,"i":42,"b":true,"t":"2026-01-10T18:03:21Z","o":{"x":[1,"y"]},"r":[1, 2]}`)
	s := Strict(in, 8)
	var got struct {
		s       string
		n       float64
		i       int64
		b       bool
		tm      time.Time
		raw     []byte
		members int
	}
	ok := s.Object(func(k []byte) bool {
		got.members++
		var ok bool
		switch string(k) {
		case "s":
			got.s, ok = s.Text()
		case "n":
			got.n, ok = s.Float()
		case "i":
			got.i, ok = s.Int()
		case "b":
			got.b, ok = s.Bool()
		case "t":
			got.tm, ok = s.Time()
		case "r":
			got.raw, ok = s.Value()
		default:
			ok = s.Skip()
		}
		return ok
	})
	require.True(t, ok)
	require.True(t, s.AtEnd())
	require.Equal(t, 7, got.members)
	require.Equal(t, `a"b`, got.s)
	require.Equal(t, -1.5, got.n)
	require.Equal(t, int64(42), got.i)
	require.True(t, got.b)
	require.True(t, got.tm.Equal(time.Date(2026, 1, 10, 18, 3, 21, 0, time.UTC)))
	require.Equal(t, `[1, 2]`, string(got.raw))
}

func FuzzScanner(f *testing.F) {
	for _, c := range cases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) { check(t, b) })
}

// check compares the scanner with encoding/json on b: validity, the value
// tree built from typed extraction, and each typed reader on its own.
func check(t *testing.T, b []byte) {
	t.Helper()
	const depth = 10000 // encoding/json's own cap
	s := Strict(b, depth)
	ok := s.Skip() && s.AtEnd()
	valid := json.Valid(b)
	require.Equal(t, valid && utf8.Valid(b), ok, "strict scan of %q", b)
	if !valid {
		return
	}
	// A trusted scan of valid JSON (even with bad UTF-8) finds the same end.
	ts := Trusted(b, depth)
	require.True(t, ts.Skip() && ts.AtEnd(), "trusted scan of %q", b)

	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var want any
	require.NoError(t, dec.Decode(&want))
	ts = Trusted(b, depth)
	got, ok := tree(&ts)
	require.True(t, ok, "tree of %q", b)
	require.Equal(t, want, got, "tree of %q", b)

	typed(t, b)
}

// tree builds what encoding/json builds into an any with UseNumber.
func tree(s *Scanner) (any, bool) {
	switch s.Peek() {
	case '{':
		m := map[string]any{}
		if !s.Enter() {
			return nil, false
		}
		for n := 0; ; n++ {
			more, ok := s.Next(n, '}')
			if !ok {
				return nil, false
			}
			if !more {
				return m, true
			}
			k, _, ok := s.Key()
			if !ok {
				return nil, false
			}
			key, ok := Unquote(k)
			if !ok {
				return nil, false
			}
			if m[key], ok = tree(s); !ok {
				return nil, false
			}
		}
	case '[':
		a := []any{}
		ok := s.Array(func() bool {
			v, ok := tree(s)
			a = append(a, v)
			return ok
		})
		return a, ok
	case '"':
		return s.Text()
	case 't', 'f':
		return s.Bool()
	case 'n':
		return nil, s.Literal("null")
	}
	lit, ok := s.Number()
	return json.Number(lit), ok
}

// typed checks each typed reader against json.Unmarshal into its type.
func typed(t *testing.T, b []byte) {
	for _, trusted := range []bool{false, true} {
		scan := func() *Scanner {
			s := Strict(b, 64)
			if trusted {
				s = Trusted(b, 64)
			}
			return &s
		}
		var str string
		if json.Unmarshal(b, &str) == nil && bytes.TrimSpace(b)[0] == '"' {
			s := scan()
			got, ok := s.Text()
			require.Equal(t, trusted || utf8.Valid(b), ok, "Text of %q", b)
			if ok {
				require.Equal(t, str, got, "Text of %q", b)
			}
		}
		var tm time.Time
		wantOK := json.Unmarshal(b, &tm) == nil && bytes.TrimSpace(b)[0] == '"'
		if s := scan(); s.Peek() == '"' {
			got, ok := s.Time()
			if !trusted && !utf8.Valid(b) {
				wantOK = false
			}
			require.Equal(t, wantOK, ok, "Time of %q", b)
			if ok {
				require.True(t, tm.Equal(got) && tm.Location().String() == got.Location().String(), "Time of %q", b)
			}
		}
		var fl float64
		wantOK = json.Unmarshal(b, &fl) == nil && bytes.TrimSpace(b)[0] != 'n'
		if s := scan(); s.Peek() == '-' || '0' <= s.Peek() && s.Peek() <= '9' {
			got, ok := s.Float()
			require.Equal(t, wantOK, ok, "Float of %q", b)
			if ok {
				require.Equal(t, fl, got, "Float of %q", b)
			}
		}
		var in int64
		wantOK = json.Unmarshal(b, &in) == nil && bytes.TrimSpace(b)[0] != 'n'
		if s := scan(); s.Peek() == '-' || '0' <= s.Peek() && s.Peek() <= '9' {
			got, ok := s.Int()
			require.Equal(t, wantOK, ok, "Int of %q", b)
			if ok {
				require.Equal(t, in, got, "Int of %q", b)
			}
		}
	}
}
