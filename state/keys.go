package state

import (
	"encoding/binary"
)

// Key layout (docs/format/badger.md). Everything a partition owns lives
// under "P" + partition (uint16 BE), so one partition's state can be
// scanned, snapshotted and restored on its own; a variable-length id
// inside a key is length-prefixed (uvarint), so no id can fall under
// another id's prefix whatever bytes it contains.
const (
	partitionTag = 'P'
	globalTag    = 'G'

	kindCheckpoint = 'c' // P p c                              Checkpoint
	kindEpoch      = 'e' // P p e                              lease epoch of the last owner that committed (BE64)
	kindDedup      = 'd' // P p d <len src><src><messageId>     first position (12 bytes)
	kindDups       = 'D' // P p D <seq BE64>                     duplicate line indexes of a message
	kindUser       = 'u' // P p u <len user><user> ...           see userCore, userBookmark, userSession
	kindOpenIndex  = 'o' // P p o <closeAt ms BE64><user>        user has a session to close at closeAt
	kindTitle      = 't' // P p t <asset>                        Title share of the partition
	kindPaths      = 'p' // P p p                                Paths share of the partition
	kindOutbox     = 'x' // P p x <len id><id><version BE32>     lake session JSON awaiting publication
	kindAlias      = 'a' // P p a <len anonymousId><anonymousId> the userId it was merged into
	kindControl    = 'y' // P p y <len id><id>                   control message awaiting publication
	kindForgotten  = 'r' // P p r <len regulation><regulation>   applied forget awaiting its report

	userCore     = 0x00 // ... u <user> 00                  User
	userBookmark = 'b'  // ... u <user> b <asset>          Bookmark
	userSession  = 's'  // ... u <user> s <^start ms BE64> Session (closed)
)

// SchemaKey holds the layout version of the whole store ("2").
var SchemaKey = []byte{globalTag, 'v'}

// RestoreKey marks partition p's range as being replaced by a snapshot
// (G r <p u16 BE>): while it exists the range is incomplete. It lies
// outside the range on purpose: it belongs to this store, never to a
// snapshot.
func RestoreKey(p int) []byte {
	return binary.BigEndian.AppendUint16([]byte{globalTag, 'r'}, uint16(p))
}

// Schema is the layout version this release writes.
const Schema = "2"

// PartitionPrefix is the prefix of everything partition p owns.
func PartitionPrefix(p int) []byte {
	return binary.BigEndian.AppendUint16([]byte{partitionTag}, uint16(p))
}

func pkey(p int, kind byte, extra int) []byte {
	k := make([]byte, 0, 4+extra)
	k = append(k, partitionTag)
	k = binary.BigEndian.AppendUint16(k, uint16(p))
	return append(k, kind)
}

func appendID(k []byte, id string) []byte {
	k = binary.AppendUvarint(k, uint64(len(id)))
	return append(k, id...)
}

// CheckpointKey is partition p's checkpoint.
func CheckpointKey(p int) []byte { return pkey(p, kindCheckpoint, 0) }

// EpochKey holds the epoch of the partition lease under which this node
// last committed partition p (absent without partition ownership).
func EpochKey(p int) []byte { return pkey(p, kindEpoch, 0) }

// DedupKey is the dedup entry of (source, messageId) in partition p.
func DedupKey(p int, source, messageID string) []byte {
	return append(appendID(pkey(p, kindDedup, len(source)+len(messageID)+2), source), messageID...)
}

// DupsKey lists the duplicate lines of the events message at seq.
func DupsKey(p int, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(pkey(p, kindDups, 8), seq)
}

// DupsPrefix is the prefix of partition p's duplicate lists.
func DupsPrefix(p int) []byte { return pkey(p, kindDups, 8) }

// DupsSeq is the sequence of a DupsKey.
func DupsSeq(k []byte) (uint64, bool) {
	if len(k) != 12 || k[3] != kindDups {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[4:]), true
}

// UserPrefix is the prefix of every key of user in partition p.
func UserPrefix(p int, user string) []byte { return appendID(pkey(p, kindUser, len(user)+4), user) }

// UserKey is the user's core record.
func UserKey(p int, user string) []byte { return append(UserPrefix(p, user), userCore) }

// BookmarksPrefix is the prefix of the user's bookmarks.
func BookmarksPrefix(p int, user string) []byte { return append(UserPrefix(p, user), userBookmark) }

// BookmarkKey is the user's bookmark of asset.
func BookmarkKey(p int, user, asset string) []byte {
	return append(BookmarksPrefix(p, user), asset...)
}

// SessionsPrefix is the prefix of the user's closed sessions, newest first.
func SessionsPrefix(p int, user string) []byte { return append(UserPrefix(p, user), userSession) }

// SessionKey is the user's closed session starting at startMs.
func SessionKey(p int, user string, startMs int64) []byte {
	return binary.BigEndian.AppendUint64(SessionsPrefix(p, user), ^uint64(startMs))
}

// OpenIndexPrefix is the prefix of partition p's open-session index.
func OpenIndexPrefix(p int) []byte { return pkey(p, kindOpenIndex, 8) }

// OpenIndexKey says user has a session that closes no earlier than
// closeAtMs.
func OpenIndexKey(p int, closeAtMs int64, user string) []byte {
	return append(binary.BigEndian.AppendUint64(OpenIndexPrefix(p), uint64(closeAtMs)), user...)
}

// TitlePrefix is the prefix of partition p's title shares.
func TitlePrefix(p int) []byte { return pkey(p, kindTitle, 0) }

// TitleKey is partition p's share of asset's aggregates.
func TitleKey(p int, asset string) []byte { return append(TitlePrefix(p), asset...) }

// PathsKey is partition p's share of the top paths.
func PathsKey(p int) []byte { return pkey(p, kindPaths, 0) }

// OutboxPrefix is the prefix of partition p's outbox.
func OutboxPrefix(p int) []byte { return pkey(p, kindOutbox, 0) }

// OutboxKey is a closed session version waiting to be published.
func OutboxKey(p int, sessionID string, version int) []byte {
	return binary.BigEndian.AppendUint32(appendID(pkey(p, kindOutbox, len(sessionID)+5), sessionID), uint32(version))
}

// OutboxMsgID is the Nats-Msg-Id of an outbox key: "<sessionId>/<version>".
func OutboxMsgID(k []byte) (string, bool) {
	if len(k) < 4+4 {
		return "", false
	}
	rest := k[4:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || uint64(len(rest)-w) != n+4 {
		return "", false
	}
	id := rest[w : w+int(n)]
	v := binary.BigEndian.Uint32(rest[w+int(n):])
	return string(id) + "/" + uitoa(uint64(v)), true
}

// ControlPrefix is the prefix of partition p's control outbox.
func ControlPrefix(p int) []byte { return pkey(p, kindControl, 0) }

// ControlKey is a control message (msgID) of partition p awaiting
// publication.
func ControlKey(p int, msgID string) []byte {
	return appendID(pkey(p, kindControl, len(msgID)+2), msgID)
}

// ForgottenPrefix is the prefix of partition p's forget reports.
func ForgottenPrefix(p int) []byte { return pkey(p, kindForgotten, 0) }

// ForgottenKey is the report of regulation's forget applied in partition
// p, awaiting its relay to the regulation registry.
func ForgottenKey(p int, regulation string) []byte {
	return appendID(pkey(p, kindForgotten, len(regulation)+2), regulation)
}

// AliasPrefix is the prefix of partition p's aliases.
func AliasPrefix(p int) []byte { return pkey(p, kindAlias, 0) }

// AliasKey maps an anonymousId of partition p to the userId it merged into.
func AliasKey(p int, anonymousID string) []byte {
	return appendID(pkey(p, kindAlias, len(anonymousID)+2), anonymousID)
}

func uitoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return string(b[i:])
}
