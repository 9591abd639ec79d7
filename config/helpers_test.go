package config

import (
	"reflect"
	"strings"
)

func reflectValue(v any) reflect.Value { return reflect.ValueOf(v) }

func lastDot(s string) int { return strings.LastIndex(s, ".") }

// goldenInput sets every secret so the golden file proves redaction.
const goldenInput = `
query:
  tokens: [super-secret-token]
`

var goldenSecrets = []string{"super-secret-token"}
