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
ingest:
  sources:
    - name: web
      write_key: write-key-web-secret
    - name: ios
      write_key: write-key-ios-secret
`

var goldenSecrets = []string{"super-secret-token", "write-key-web-secret", "write-key-ios-secret"}
