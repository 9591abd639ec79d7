//go:build clickpipe_crashpoints

package archive

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
)

// crashpoints: see crashpoint_off.go. CLICKPIPE_CRASHPOINT names the step,
// CLICKPIPE_CRASHPOINT_HIT which pass through it ends the process (default
// the first), with exit status 137 like a SIGKILL.
type crashpoints struct{ hits atomic.Int64 }

func (c *crashpoints) at(name string) {
	if c == nil || os.Getenv("CLICKPIPE_CRASHPOINT") != name {
		return
	}
	want, err := strconv.ParseInt(os.Getenv("CLICKPIPE_CRASHPOINT_HIT"), 10, 64)
	if err != nil || want < 1 {
		want = 1
	}
	if c.hits.Add(1) == want {
		fmt.Fprintf(os.Stderr, "crashpoint %s reached: exiting\n", name)
		os.Exit(137)
	}
}
