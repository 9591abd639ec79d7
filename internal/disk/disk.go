// Package disk watches free space under the data directory and refuses
// intake before the disk fills: real ENOSPC disables JetStream and crashes
// Badger, so the floor must trip first.
package disk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// ErrLowSpace is reported while free space is below the watermark.
var ErrLowSpace = errors.New("disk: free space below watermark")

// Config is the disk section of the configuration.
type Config struct {
	// MinFreePercent refuses intake below this share of the filesystem free.
	MinFreePercent float64 `mapstructure:"min_free_percent"`
	// MinFreeBytes refuses intake below this many bytes free. The larger of
	// the two floors applies.
	MinFreeBytes int64 `mapstructure:"min_free_bytes"`
	// CheckInterval is how often free space is measured.
	CheckInterval time.Duration `mapstructure:"check_interval"`
}

// DefaultConfig returns the documented defaults: 10 % or 2 GiB.
func DefaultConfig() Config {
	return Config{MinFreePercent: 10, MinFreeBytes: 2 << 30, CheckInterval: time.Second}
}

// Validate names the offending key.
func (c Config) Validate() error {
	if c.MinFreePercent < 0 || c.MinFreePercent >= 100 {
		return fmt.Errorf("disk.min_free_percent: %v is outside 0..100", c.MinFreePercent)
	}
	if c.MinFreeBytes < 0 {
		return fmt.Errorf("disk.min_free_bytes: %d is negative", c.MinFreeBytes)
	}
	if c.CheckInterval < 10*time.Millisecond {
		return fmt.Errorf("disk.check_interval: %s is below 10ms", c.CheckInterval)
	}
	return nil
}

// Usage is one measurement.
type Usage struct {
	Free, Total uint64
}

// Measure reads free and total bytes of the filesystem holding dir.
func Measure(dir string) (Usage, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return Usage{Free: st.Bavail * uint64(st.Bsize), Total: st.Blocks * uint64(st.Bsize)}, nil
}

// Watermark caches the latest verdict for dir.
type Watermark struct {
	cfg     Config
	dir     string
	measure func(string) (Usage, error)

	mu   sync.Mutex
	last Usage
	err  error
}

// NewWatermark measures once so the verdict is valid from the start.
func NewWatermark(cfg Config, dir string) (*Watermark, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &Watermark{cfg: cfg, dir: dir, measure: Measure}
	if u, err := Measure(dir); err != nil {
		return nil, err
	} else {
		w.set(u, nil)
	}
	return w, nil
}

// Floor is the free-space floor in bytes for a filesystem of total bytes.
func (c Config) Floor(total uint64) uint64 {
	pct := uint64(float64(total) * c.MinFreePercent / 100)
	return max(pct, uint64(c.MinFreeBytes))
}

func (w *Watermark) set(u Usage, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = u
	if err == nil && u.Free < w.cfg.Floor(u.Total) {
		err = fmt.Errorf("%w: %d MiB free of %d MiB, floor %d MiB", ErrLowSpace,
			u.Free>>20, u.Total>>20, w.cfg.Floor(u.Total)>>20)
	}
	w.err = err
}

// Check re-measures now.
func (w *Watermark) Check() error {
	u, err := w.measure(w.dir)
	w.set(u, err)
	return w.Err()
}

// Err is the cached verdict: nil while above the floor.
func (w *Watermark) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Usage is the latest measurement.
func (w *Watermark) Usage() Usage {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Run re-measures every CheckInterval until ctx ends.
func (w *Watermark) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = w.Check()
		}
	}
}
