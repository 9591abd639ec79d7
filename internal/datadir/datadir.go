// Package datadir guards a clickpipe data directory: an exclusive lock so
// two processes never share the stores, and a marker that tells the next
// start whether the previous one stopped cleanly.
package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrLocked is returned when another process holds the data directory.
var ErrLocked = errors.New("datadir: locked by another process")

const (
	lockName    = "LOCK"
	runningName = "RUNNING"
)

// Dir is an open, locked data directory.
type Dir struct {
	path    string
	lock    *os.File
	unclean bool
}

// Open creates path if needed, takes the exclusive lock (released by the
// kernel if the process dies, so kill -9 never leaves it stuck) and writes
// the running marker. Unclean reports whether the marker was already there.
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o750); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(path, lockName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(filepath.Join(path, lockName))
		f.Close()
		return nil, fmt.Errorf("%w: %s is in use (pid %s); stop that clickpipe or use another data_dir",
			ErrLocked, path, strings.TrimSpace(string(holder)))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	d := &Dir{path: path, lock: f}
	marker := filepath.Join(path, runningName)
	if _, err := os.Stat(marker); err == nil {
		d.unclean = true
	}
	if err := os.WriteFile(marker, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o640); err != nil {
		d.Close()
		return nil, fmt.Errorf("writing running marker: %w", err)
	}
	return d, nil
}

// Path is the directory.
func (d *Dir) Path() string { return d.path }

// Unclean reports that the previous run did not stop cleanly.
func (d *Dir) Unclean() bool { return d.unclean }

// MarkClean removes the running marker; call it after every store closed.
func (d *Dir) MarkClean() error {
	err := os.Remove(filepath.Join(d.path, runningName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Close releases the lock. It is idempotent.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close()
	d.lock = nil
	return err
}
