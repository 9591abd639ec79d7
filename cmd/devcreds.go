package cmd

import (
	"os"
	"path/filepath"
	"strings"
)

// defaultDataDir is where tools look for serve's development credentials:
// $CLICKPIPE_DATA_DIR, else ./data (serve's default).
func defaultDataDir() string {
	if d := os.Getenv("CLICKPIPE_DATA_DIR"); d != "" {
		return d
	}
	return "./data"
}

// devCredential returns the development secret that serve generated and
// keeps under dataDir (dev-write-key, dev-query-token), or "".
func devCredential(dataDir, name string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// firstNonEmpty is the first of vals that is not empty.
func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
