package config

import (
	"fmt"
	"strings"
)

// envSources sets ingest.sources from the environment, which cannot carry
// a list of structs as a plain key can: CLICKPIPE_INGEST_SOURCES is a
// comma-separated list of name=write_key pairs; a bare key is the source
// "default" (docker run -e CLICKPIPE_INGEST_SOURCES=wk_...).
const envSources = "CLICKPIPE_INGEST_SOURCES"

// defaultSourceName names a source given as a bare write key.
const defaultSourceName = "default"

func parseSourcesEnv(val string) ([]map[string]any, error) {
	var out []map[string]any
	for item := range strings.SplitSeq(val, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, key, ok := strings.Cut(item, "=")
		if !ok {
			name, key = defaultSourceName, item
		}
		name, key = strings.TrimSpace(name), strings.TrimSpace(key)
		if name == "" || key == "" {
			return nil, fmt.Errorf("environment %s: want name=write_key pairs separated by commas, or one write key", envSources)
		}
		out = append(out, map[string]any{"name": name, "write_key": key})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("environment %s: empty", envSources)
	}
	return out, nil
}
