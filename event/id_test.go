package event

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckID(t *testing.T) {
	cases := []struct {
		name, id string
		max      int
		ok       bool
	}{
		{"plain", "user-1", 256, true},
		{"unicode", "ユーザー-é", 256, true},
		{"empty", "", 256, true},
		{"NUL", "victim\x00s", 256, false},
		{"newline", "a\nb", 256, false},
		{"DEL", "a\x7f", 256, false},
		{"C1 NEL", "a\u0085", 256, false},
		{"invalid UTF-8", "a\xff", 256, false},
		{"at the cap", strings.Repeat("x", 256), 256, true},
		{"past the cap", strings.Repeat("x", 257), 256, false},
		{"no cap", strings.Repeat("x", 70000), 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckID(c.id, c.max)
			if c.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}
