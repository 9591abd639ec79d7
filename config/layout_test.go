package config

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDependencyDirection enforces STYLE.md's layout: event imports only
// the standard library; subsystems never import each other; only cmd and
// config import viper.
func TestDependencyDirection(t *testing.T) {
	const mod = "github.com/clickpipe/clickpipe/"
	out, err := exec.Command("go", "list", "-json", "../...").Output()
	require.NoError(t, err)
	subsystems := []string{"ingest", "buffer", "process", "serve", "archive", "cluster"}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		require.NoError(t, dec.Decode(&p))
		rel := strings.TrimPrefix(p.ImportPath, mod)
		top := strings.Split(rel, "/")[0]
		for _, imp := range p.Imports {
			switch {
			case top == "event" && !strings.HasSuffix(rel, "test") && strings.Contains(imp, "."):
				t.Errorf("%s imports %s: event must use the standard library only", rel, imp)
			case strings.Contains(imp, "spf13/viper") && top != "cmd" && top != "config":
				t.Errorf("%s imports viper: only cmd and config may", rel)
			}
			if !strings.HasPrefix(imp, mod) || strings.HasSuffix(rel, "test") {
				continue
			}
			if top == "state" && !strings.HasPrefix(imp, mod+"event") && !strings.HasPrefix(imp, mod+"state") {
				t.Errorf("%s imports %s: state may import only event of this module", rel, imp)
			}
			itop := strings.Split(strings.TrimPrefix(imp, mod), "/")[0]
			for _, s := range subsystems {
				if top == s && itop != s && slices.Contains(subsystems, itop) {
					t.Errorf("%s imports %s: subsystems must not import each other", rel, imp)
				}
			}
		}
	}
}
