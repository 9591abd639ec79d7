package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The binary record encoding: every value starts with one version byte
// (recordVersion), followed by fields in a fixed order written with the
// helpers below: unsigned and signed varints, length-prefixed strings and
// byte strings, single-byte booleans. docs/format/badger.md lists the
// field order of every record.

// recordVersion is the first byte of every record written by this release.
const recordVersion = 2

// ErrCorrupt reports a record that does not decode.
var ErrCorrupt = errors.New("state: corrupt record")

// enc appends fields to a record.
type enc struct{ b []byte }

func newEnc(capacity int) *enc {
	e := &enc{b: make([]byte, 0, capacity)}
	e.b = append(e.b, recordVersion)
	return e
}

func (e *enc) u(v uint64)  { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) i(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) s(v string)  { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) by(v []byte) { e.u(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) f(v float64) { e.b = binary.LittleEndian.AppendUint64(e.b, math.Float64bits(v)) }
func (e *enc) bo(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// dec reads fields of a record; the first error sticks and every later
// read returns zero values.
type dec struct {
	b   []byte
	err error
}

func newDec(b []byte) *dec {
	d := &dec{b: b}
	if len(b) == 0 || b[0] != recordVersion {
		d.err = ErrCorrupt
		return d
	}
	d.b = b[1:]
	return d
}

func (d *dec) fail() { d.err, d.b = ErrCorrupt, nil }

func (d *dec) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) i() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) n() int { return int(d.u()) }

func (d *dec) raw() []byte {
	n := d.u()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) s() string { return string(d.raw()) }

func (d *dec) by() []byte {
	r := d.raw()
	if len(r) == 0 {
		return nil
	}
	return append([]byte(nil), r...)
}

func (d *dec) f() float64 {
	if d.err != nil || len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func (d *dec) bo() bool {
	if d.err != nil || len(d.b) < 1 {
		d.fail()
		return false
	}
	v := d.b[0] != 0
	d.b = d.b[1:]
	return v
}

// count reads a element count and refuses one larger than the bytes left
// could hold (every element takes at least one byte).
func (d *dec) count() int {
	n := d.u()
	if d.err == nil && n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

// more reports whether fields follow (a trailer added after records
// were first written).
func (d *dec) more() bool { return d.err == nil && len(d.b) != 0 }

func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = ErrCorrupt
	}
	return d.err
}

// EncodeEpoch and DecodeEpoch are the codec of a partition's epoch: 8
// bytes, big-endian.
func EncodeEpoch(epoch uint64) []byte { return binary.BigEndian.AppendUint64(nil, epoch) }

// DecodeEpoch decodes EncodeEpoch.
func DecodeEpoch(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("epoch: %d bytes, want 8", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
