package state

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// Partition snapshots (docs/format/snapshot.md): one partition's key
// range, read at one timestamp, as a self-checking byte stream. This file
// holds the format; snapshot_store.go reads and writes Badger.

// SnapshotVersion is the version of the snapshot format this release
// writes and the only one it reads.
const SnapshotVersion = 1

const (
	snapMagic     = "CPSNAP"
	snapTagRecord = 'K'
	snapTagEnd    = 'E'
	// Limits that keep a corrupt length from allocating before the
	// checksum can refuse it: Badger's own key limit, and a value far
	// above anything the layout writes.
	snapMaxKey   = 65000
	snapMaxValue = 256 << 20
)

// ErrBadSnapshot reports a snapshot that is truncated, corrupt, of another
// version or layout, or of another partition. Nothing was changed.
var ErrBadSnapshot = errors.New("state: bad snapshot")

// SnapshotInfo is what a snapshot's header says.
type SnapshotInfo struct {
	Partition int
	// Epoch is the writer's ownership epoch of the partition (0 when not
	// clustered); it is informational.
	Epoch uint64
	// CreatedAt is when the export started, Unix ms.
	CreatedAt int64
	// Checkpoint is the partition's checkpoint inside the snapshot (zero
	// when the partition had none).
	Checkpoint Checkpoint
	// Keys counts the records, the checkpoint excluded.
	Keys int64
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapWriter writes the format to w, summing every byte it writes.
type snapWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	buf []byte
	n   int64
	err error
}

func newSnapWriter(w io.Writer) *snapWriter {
	return &snapWriter{w: bufio.NewWriterSize(w, 256<<10), crc: crc32.New(castagnoli), buf: make([]byte, 0, 64)}
}

func (s *snapWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	s.crc.Write(b)
	_, s.err = s.w.Write(b)
}

// flushSmall writes the fixed-size fields gathered in buf.
func (s *snapWriter) flushSmall() {
	s.write(s.buf)
	s.buf = s.buf[:0]
}

func (s *snapWriter) header(info SnapshotInfo, cp []byte) {
	s.buf = append(s.buf, snapMagic...)
	s.buf = binary.BigEndian.AppendUint16(s.buf, SnapshotVersion)
	s.buf = binary.AppendUvarint(s.buf, uint64(len(Schema)))
	s.buf = append(s.buf, Schema...)
	s.buf = binary.BigEndian.AppendUint16(s.buf, uint16(info.Partition))
	s.buf = binary.AppendUvarint(s.buf, info.Epoch)
	s.buf = binary.AppendVarint(s.buf, info.CreatedAt)
	s.buf = binary.AppendUvarint(s.buf, uint64(len(cp)))
	s.flushSmall()
	s.write(cp)
}

func (s *snapWriter) record(k, v []byte, expiresAt uint64, meta byte) {
	s.buf = append(s.buf, snapTagRecord)
	s.buf = binary.AppendUvarint(s.buf, uint64(len(k)))
	s.flushSmall()
	s.write(k)
	s.buf = binary.AppendUvarint(s.buf, uint64(len(v)))
	s.flushSmall()
	s.write(v)
	s.buf = binary.AppendUvarint(s.buf, expiresAt)
	s.buf = append(s.buf, meta)
	s.flushSmall()
	s.n++
}

// end writes the trailer and flushes.
func (s *snapWriter) end() error {
	s.buf = append(s.buf, snapTagEnd)
	s.buf = binary.AppendUvarint(s.buf, uint64(s.n))
	s.flushSmall()
	if s.err == nil {
		_, s.err = s.w.Write(binary.BigEndian.AppendUint32(nil, s.crc.Sum32()))
	}
	if s.err == nil {
		s.err = s.w.Flush()
	}
	return s.err
}

// snapRecord is one key of a snapshot.
type snapRecord struct {
	key, value []byte
	expiresAt  uint64
	meta       byte
}

// snapReader decodes the format, summing every byte it reads. With owned
// set every record gets fresh slices (the load pass hands them to Badger);
// otherwise one buffer is reused (the verification pass).
type snapReader struct {
	r     *bufio.Reader
	crc   uint32
	one   [1]byte
	owned bool
	kbuf  []byte
	vbuf  []byte
	// readErr is the last error of the underlying reader, to tell it
	// from a varint that overflows (corrupt bytes).
	readErr error
}

func (d *snapReader) ReadByte() (byte, error) {
	b, err := d.r.ReadByte()
	if err == nil {
		d.one[0] = b
		d.sum(d.one[:])
	} else {
		d.readErr = err
	}
	return b, err
}

func (d *snapReader) sum(b []byte) { d.crc = crc32.Update(d.crc, castagnoli, b) }

func (d *snapReader) uvarint() (uint64, error) {
	v, err := binary.ReadUvarint(d)
	return v, d.varintErr(err)
}

func (d *snapReader) varint() (int64, error) {
	v, err := binary.ReadVarint(d)
	return v, d.varintErr(err)
}

// varintErr is a varint's error: the reader's as it is, else the bytes
// are not a varint (it overflows 64 bits): ErrBadSnapshot.
func (d *snapReader) varintErr(err error) error {
	if err == nil || d.readErr != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
}

// bytes reads n bytes, n at most limit, into buf unless owned.
func (d *snapReader) bytes(n, limit uint64, what string, buf *[]byte) ([]byte, error) {
	if n > limit {
		return nil, fmt.Errorf("%w: %s of %d bytes", ErrBadSnapshot, what, n)
	}
	var b []byte
	if d.owned || buf == nil {
		b = make([]byte, n)
	} else {
		if uint64(cap(*buf)) < n {
			*buf = make([]byte, n)
		}
		b = (*buf)[:n]
	}
	if _, err := io.ReadFull(d.r, b); err != nil {
		return nil, err
	}
	d.sum(b)
	return b, nil
}

func (d *snapReader) u16() (uint16, error) {
	var b [2]byte
	if _, err := io.ReadFull(d.r, b[:]); err != nil {
		return 0, err
	}
	d.sum(b[:])
	return binary.BigEndian.Uint16(b[:]), nil
}

// readSnapshot decodes a snapshot of partition p from r, calling fn (when
// not nil) with every record, and returns its header and raw checkpoint
// record once the trailer's count and checksum agree and nothing follows
// them. A short read is ErrBadSnapshot (truncated); other read errors are
// returned as they are.
func readSnapshot(r io.Reader, p int, owned bool, fn func(snapRecord) error) (SnapshotInfo, []byte, error) {
	d := &snapReader{r: bufio.NewReaderSize(r, 256<<10), owned: owned}
	info, cp, err := d.header(p)
	if err == nil {
		info.Keys, err = d.records(p, fn)
	}
	if err == nil {
		err = d.trailer(info.Keys)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w: truncated", ErrBadSnapshot)
	}
	return info, cp, err
}

func (d *snapReader) header(p int) (SnapshotInfo, []byte, error) {
	var info SnapshotInfo
	magic, err := d.bytes(uint64(len(snapMagic)), uint64(len(snapMagic)), "magic", &d.kbuf)
	if err != nil {
		return info, nil, err
	}
	if string(magic) != snapMagic {
		return info, nil, fmt.Errorf("%w: not a snapshot (magic %q)", ErrBadSnapshot, magic)
	}
	version, err := d.u16()
	if err != nil {
		return info, nil, err
	}
	if version != SnapshotVersion {
		return info, nil, fmt.Errorf("%w: format version %d, this release reads %d", ErrBadSnapshot, version, SnapshotVersion)
	}
	if err := d.schema(); err != nil {
		return info, nil, err
	}
	return d.partition(p)
}

func (d *snapReader) schema() error {
	n, err := d.uvarint()
	if err != nil {
		return err
	}
	schema, err := d.bytes(n, 16, "layout", &d.kbuf)
	if err != nil {
		return err
	}
	if string(schema) != Schema {
		return fmt.Errorf("%w: state layout %q, this release writes %q", ErrBadSnapshot, schema, Schema)
	}
	return nil
}

// partition reads the rest of the header: partition, epoch, creation time
// and checkpoint.
func (d *snapReader) partition(p int) (SnapshotInfo, []byte, error) {
	var info SnapshotInfo
	part, err := d.u16()
	if err != nil {
		return info, nil, err
	}
	if int(part) != p {
		return info, nil, fmt.Errorf("%w: snapshot of partition %d, not %d", ErrBadSnapshot, part, p)
	}
	info.Partition = p
	if info.Epoch, err = d.uvarint(); err != nil {
		return info, nil, err
	}
	if info.CreatedAt, err = d.varint(); err != nil {
		return info, nil, err
	}
	n, err := d.uvarint()
	if err != nil {
		return info, nil, err
	}
	cp, err := d.bytes(n, 1<<10, "checkpoint", nil)
	if err != nil || n == 0 {
		return info, nil, err
	}
	if info.Checkpoint, err = DecodeCheckpoint(cp); err != nil {
		return info, nil, fmt.Errorf("%w: checkpoint: %w", ErrBadSnapshot, err)
	}
	return info, cp, nil
}

// records reads records up to the end tag and says how many there were.
func (d *snapReader) records(p int, fn func(snapRecord) error) (int64, error) {
	prefix := PartitionPrefix(p)
	checkpoint := CheckpointKey(p)
	var n int64
	for {
		tag, err := d.ReadByte()
		if err != nil {
			return n, err
		}
		switch tag {
		case snapTagEnd:
			return n, nil
		case snapTagRecord:
		default:
			return n, fmt.Errorf("%w: unknown tag %#x after %d records", ErrBadSnapshot, tag, n)
		}
		rec, err := d.record()
		if err != nil {
			return n, err
		}
		if !hasPrefix(rec.key, prefix) || string(rec.key) == string(checkpoint) {
			return n, fmt.Errorf("%w: record %d has key %x outside partition %d", ErrBadSnapshot, n, rec.key, p)
		}
		if fn != nil {
			if err := fn(rec); err != nil {
				return n, err
			}
		}
		n++
	}
}

func (d *snapReader) record() (snapRecord, error) {
	var rec snapRecord
	n, err := d.uvarint()
	if err != nil {
		return rec, err
	}
	if rec.key, err = d.bytes(n, snapMaxKey, "key", &d.kbuf); err != nil {
		return rec, err
	}
	if n, err = d.uvarint(); err != nil {
		return rec, err
	}
	if rec.value, err = d.bytes(n, snapMaxValue, "value", &d.vbuf); err != nil {
		return rec, err
	}
	if rec.expiresAt, err = d.uvarint(); err != nil {
		return rec, err
	}
	rec.meta, err = d.ReadByte()
	return rec, err
}

// trailer checks the record count, the checksum and that nothing follows.
func (d *snapReader) trailer(keys int64) error {
	n, err := d.uvarint()
	if err != nil {
		return err
	}
	if n != uint64(keys) {
		return fmt.Errorf("%w: trailer counts %d records, found %d", ErrBadSnapshot, n, keys)
	}
	want := d.crc
	var sum [4]byte
	if _, err := io.ReadFull(d.r, sum[:]); err != nil {
		return err
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return fmt.Errorf("%w: checksum %08x, computed %08x", ErrBadSnapshot, got, want)
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		if err == nil {
			return fmt.Errorf("%w: bytes after the trailer", ErrBadSnapshot)
		}
		return err
	}
	return nil
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}
