package regulation

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/clickpipe/clickpipe/event"
)

// FuzzRequest: no body makes the request check panic, and an accepted
// request has a known type, sorted distinct ids that are safe keys, and a
// safe regulation id.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(`{"type":"delete","user_ids":["u1","u1","a"]}`))
	f.Add([]byte(`{"id":"mine","type":"suppress_with_delete","user_ids":["x"]}`))
	f.Add([]byte(`{"type":"unsuppress","user_ids":[""]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var q Request
		if json.Unmarshal(b, &q) != nil {
			return
		}
		if q.normalise(8) != nil {
			return
		}
		if q.ID != "" && !idPattern.MatchString(q.ID) {
			t.Fatalf("accepted id %q", q.ID)
		}
		if !slices.IsSorted(q.UserIDs) || len(slices.Compact(slices.Clone(q.UserIDs))) != len(q.UserIDs) || len(q.UserIDs) == 0 {
			t.Fatalf("ids not sorted and distinct: %q", q.UserIDs)
		}
		for _, id := range q.UserIDs {
			if id == "" || event.CheckID(id, event.MaxKeyIDBytes) != nil {
				t.Fatalf("accepted id %q", id)
			}
		}
		if !idPattern.MatchString(derivedID(q.Type, q.UserIDs)) {
			t.Fatal("derived id is not a safe key")
		}
	})
}
