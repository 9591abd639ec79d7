package loadgen

import (
	"bufio"
	"fmt"
	"os"
	"sync"
)

// Witness appends acknowledged messageIds, one per line, to a file and
// fsyncs them before Record returns, so every id counted as acknowledged
// is on disk. Concurrent Records share fsyncs (group commit).
type Witness struct {
	f *os.File

	mu      sync.Mutex // guards w, written, err
	w       *bufio.Writer
	written uint64
	err     error

	syncMu sync.Mutex // serialises fsyncs; guards synced
	synced uint64
}

// OpenWitness creates or appends to path.
func OpenWitness(path string) (*Witness, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening witness: %w", err)
	}
	return &Witness{f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

// Record appends lines ("id\n" each) and returns once they are fsynced.
func (w *Witness) Record(lines []byte) error {
	w.mu.Lock()
	if w.err == nil {
		_, w.err = w.w.Write(lines)
	}
	w.written++
	mine, err := w.written, w.err
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("writing witness: %w", err)
	}
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	if w.synced >= mine {
		return nil
	}
	w.mu.Lock()
	if w.err == nil {
		w.err = w.w.Flush()
	}
	upto, err := w.written, w.err
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("flushing witness: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("syncing witness: %w", err)
	}
	w.synced = upto
	return nil
}

// Close flushes and closes the file.
func (w *Witness) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	ferr := w.w.Flush()
	serr := w.f.Sync()
	cerr := w.f.Close()
	if ferr != nil {
		return fmt.Errorf("closing witness: %w", ferr)
	}
	if serr != nil {
		return fmt.Errorf("closing witness: %w", serr)
	}
	if cerr != nil {
		return fmt.Errorf("closing witness: %w", cerr)
	}
	return nil
}
