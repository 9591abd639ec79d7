package regulation

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// Regulation types (Segment's SUPPRESS, DELETE_ONLY,
// SUPPRESS_WITH_DELETE, UNSUPPRESS).
const (
	TypeSuppress           = "suppress"
	TypeDelete             = "delete"
	TypeSuppressWithDelete = "suppress_with_delete"
	TypeUnsuppress         = "unsuppress"
)

// Statuses of a regulation and of one store.
const (
	StatusPending   = "pending"
	StatusDone      = "done"
	StatusCompleted = "completed"
)

// Stores a deletion has to clear. The serving state ("state") is cleared
// by the sessionizer; the lake stores by the archive.
const (
	StoreState        = "state"
	StoreLakeEvents   = "lake/events"
	StoreLakeSessions = "lake/sessions"
	StoreLakeFailed   = "lake/failed"
)

// Stores lists every store a deletion clears, in report order.
var Stores = []string{StoreState, StoreLakeEvents, StoreLakeSessions, StoreLakeFailed}

// Sentinel errors; the HTTP API maps them to its error codes.
var (
	ErrInvalid  = errors.New("regulation: invalid request")
	ErrNotFound = errors.New("regulation: not found")
	ErrConflict = errors.New("regulation: id already used by another request")
)

// Regulation is one request and its audit record: who asked, when, the
// ids it covers (including those linked by identity stitching), and what
// each store found and removed. It never holds the deleted data.
type Regulation struct {
	ID          string                   `json:"id"`
	Type        string                   `json:"type"`
	UserIDs     []string                 `json:"user_ids"`
	RequestedBy string                   `json:"requested_by"`
	Created     time.Time                `json:"created"`
	Stores      map[string]StoreProgress `json:"stores"`
	Status      string                   `json:"status"`
	Completed   time.Time                `json:"completed,omitzero"`
	// Requested are the ids of the request as sent (UserIDs adds the
	// linked ones).
	Requested []string `json:"requested_ids"`
	// StatePartitions are the partitions whose sessionizer has not yet
	// applied the forget message; ForgetPublished says the messages are
	// in the stream.
	StatePartitions []int `json:"state_partitions,omitempty"`
	ForgetPublished bool  `json:"forget_published,omitempty"`
}

// StoreProgress is one store's part of a regulation.
type StoreProgress struct {
	Status  string    `json:"status"` // pending|done
	Found   int64     `json:"found"`
	Removed int64     `json:"removed"`
	Detail  string    `json:"detail,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// Request is what a client asks for.
type Request struct {
	// ID is optional: a client-chosen id makes a retry idempotent; without
	// one, the id derives from the type and the ids.
	ID      string   `json:"id,omitempty"`
	Type    string   `json:"type"`
	UserIDs []string `json:"user_ids"`
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// erases reports whether a type deletes stored data.
func erases(typ string) bool { return typ == TypeDelete || typ == TypeSuppressWithDelete }

// normalise checks a request and returns its sorted, distinct ids.
func (q *Request) normalise(maxIDs int) error {
	switch q.Type {
	case TypeSuppress, TypeDelete, TypeSuppressWithDelete, TypeUnsuppress:
	case "":
		return fmt.Errorf("%w: type is required (suppress, delete, suppress_with_delete or unsuppress)", ErrInvalid)
	default:
		return fmt.Errorf("%w: type %q is not suppress, delete, suppress_with_delete or unsuppress", ErrInvalid, q.Type)
	}
	if q.ID != "" && !idPattern.MatchString(q.ID) {
		return fmt.Errorf("%w: id must be 1 to 64 of A-Z a-z 0-9 _ -", ErrInvalid)
	}
	if len(q.UserIDs) == 0 {
		return fmt.Errorf("%w: user_ids must list at least one userId or anonymousId", ErrInvalid)
	}
	if len(q.UserIDs) > maxIDs {
		return fmt.Errorf("%w: %d user_ids, at most %d per request (regulation.max_user_ids)", ErrInvalid, len(q.UserIDs), maxIDs)
	}
	for i, id := range q.UserIDs {
		if id == "" {
			return fmt.Errorf("%w: user_ids[%d] is empty", ErrInvalid, i)
		}
		if err := event.CheckID(id, event.MaxKeyIDBytes); err != nil {
			return fmt.Errorf("%w: user_ids[%d]: %w", ErrInvalid, i, err)
		}
	}
	q.UserIDs = slices.Compact(slices.Sorted(slices.Values(q.UserIDs)))
	return nil
}

// derivedID is the id of a request without one: the same type and ids
// are the same regulation.
func derivedID(typ string, ids []string) string {
	h := sha256.New()
	h.Write([]byte(typ))
	for _, id := range ids {
		h.Write([]byte{0})
		h.Write([]byte(id))
	}
	return "reg_" + hex.EncodeToString(h.Sum(nil)[:12])
}

// userKey is the key of an id in the users bucket (KV keys allow only
// [-/_=.a-zA-Z0-9]).
func userKey(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func userFromKey(k string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(k)
	return string(b), err == nil
}

// status is one id's entry in the users bucket.
type status struct {
	Suppressed bool `json:"suppressed,omitempty"`
	// ErasedAt is the creation time of the latest erasure of the id.
	ErasedAt time.Time `json:"erased_at,omitzero"`
	// Regulation is the last regulation that changed the entry.
	Regulation string `json:"regulation"`
}

// apply is what regulation reg does to an id's status.
func (s status) apply(reg *Regulation) status {
	switch reg.Type {
	case TypeSuppress:
		s.Suppressed = true
	case TypeSuppressWithDelete:
		s.Suppressed = true
		s.ErasedAt = latest(s.ErasedAt, reg.Created)
	case TypeDelete:
		s.ErasedAt = latest(s.ErasedAt, reg.Created)
	case TypeUnsuppress:
		s.Suppressed = false
	}
	s.Regulation = reg.ID
	return s
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (s status) empty() bool { return !s.Suppressed && s.ErasedAt.IsZero() }

// newRegulation builds the record of a checked request.
func newRegulation(q Request, ids []string, by string, now time.Time, partitions int, stores []string) Regulation {
	reg := Regulation{ID: q.ID, Type: q.Type, UserIDs: ids, Requested: q.UserIDs, RequestedBy: by,
		Created: now.UTC(), Stores: map[string]StoreProgress{}, Status: StatusPending}
	if erases(q.Type) {
		for _, s := range stores {
			reg.Stores[s] = StoreProgress{Status: StatusPending, Updated: reg.Created}
		}
	}
	if _, ok := reg.Stores[StoreState]; ok {
		seen := map[int]bool{}
		for _, id := range ids {
			if p := event.Partition(id, partitions); !seen[p] {
				seen[p] = true
				reg.StatePartitions = append(reg.StatePartitions, p)
			}
		}
		slices.Sort(reg.StatePartitions)
	}
	reg.complete(now)
	return reg
}

// complete marks the regulation completed once no store is pending.
func (reg *Regulation) complete(now time.Time) {
	if reg.Status == StatusCompleted {
		return
	}
	for _, p := range reg.Stores {
		if p.Status != StatusDone {
			return
		}
	}
	reg.Status, reg.Completed = StatusCompleted, now.UTC()
}
