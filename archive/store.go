package archive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ObjectStore is where the lake lives. Put is all-or-nothing: a reader sees
// either the whole new object or the previous state, never a part. Keys are
// slash-separated and relative to the store's root.
type ObjectStore interface {
	Put(ctx context.Context, key string, data []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns the keys under prefix in lexical order.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Copy makes dst a copy of src, all-or-nothing like Put (a
	// server-side copy on S3, a hard link renamed into place on disk);
	// ErrNotFound when src is absent.
	Copy(ctx context.Context, src, dst string) error
}

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("archive: object not found")

// ErrUnreachable reports a store that did not answer at all. OpenStore
// returns a usable store together with it: the archiver starts anyway and
// retries, so an outage never stops start-up.
var ErrUnreachable = errors.New("archive: object store unreachable")

// OpenStore opens the store that cfg.URL names and checks it is usable: the
// directory is created, the bucket must exist (or is created when
// cfg.S3.CreateBucket is set).
func OpenStore(ctx context.Context, cfg Config) (ObjectStore, error) {
	scheme, rest, err := parseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("archive.url: %w", err)
	}
	if scheme == "file" {
		return OpenDir(rest)
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	return openS3(ctx, cfg.S3, bucket, prefix)
}

// DirStore keeps objects as files under a directory. Put writes a temporary
// file, fsyncs it, renames it over the key and fsyncs the directory.
type DirStore struct{ root string }

// OpenDir creates dir if needed.
func OpenDir(dir string) (*DirStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating lake directory: %w", err)
	}
	return &DirStore{root: dir}, nil
}

// Root is the lake directory.
func (d *DirStore) Root() string { return d.root }

func (d *DirStore) path(key string) (string, error) {
	clean := path.Clean("/" + key)[1:]
	if clean == "" || clean != key {
		return "", fmt.Errorf("archive: invalid key %q", key)
	}
	return filepath.Join(d.root, filepath.FromSlash(clean)), nil
}

// Put stores data under key atomically and durably.
func (d *DirStore) Put(ctx context.Context, key string, data []byte) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("putting %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("putting %s: %w", key, err)
	}
	if err := writeSync(tmp, data); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("putting %s: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("putting %s: %w", key, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("putting %s: %w", key, err)
	}
	return nil
}

func writeSync(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// Copy links src to a temporary name beside dst and renames it over dst,
// then fsyncs the directory; where hard links are not possible it copies
// the bytes through Put.
func (d *DirStore) Copy(ctx context.Context, src, dst string) error {
	sp, err := d.path(src)
	if err != nil {
		return err
	}
	dp, err := d.path(dst)
	if err != nil {
		return err
	}
	dir := filepath.Dir(dp)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".tmp-link-%d", time.Now().UnixNano()))
	if err := os.Link(sp, tmp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("copying %s: %w", src, ErrNotFound)
		}
		data, gerr := d.Get(ctx, src)
		if gerr != nil {
			return gerr
		}
		return d.Put(ctx, dst, data)
	}
	if err := os.Rename(tmp, dp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return nil
}

// Get reads key; ErrNotFound when absent.
func (d *DirStore) Get(ctx context.Context, key string) ([]byte, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("getting %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("getting %s: %w", key, err)
	}
	return b, nil
}

// Delete removes key.
func (d *DirStore) Delete(ctx context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	return nil
}

// List walks the directory under prefix, skipping temporary files.
func (d *DirStore) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	start := filepath.Join(d.root, filepath.FromSlash(path.Dir("/"+prefix)))
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", prefix, err)
	}
	sort.Strings(keys)
	return keys, nil
}
