package archive

import (
	"net/http"
	"sync"
	"time"

	"github.com/clickpipe/clickpipe/internal/httpx"
)

// statusCacheFor bounds how often GET /v1/lake/status lists the lake,
// however many consoles poll it.
const statusCacheFor = 5 * time.Second

// LakeStatus is the body of GET /v1/lake/status.
type LakeStatus struct {
	Enabled bool          `json:"enabled"`
	ReadAt  time.Time     `json:"read_at,omitzero"`
	Tables  []TableStatus `json:"tables"`
}

// StatusHandler serves GET /v1/lake/status: Status of every table, read at
// most once per statusCacheFor. a may be nil (archive disabled).
func StatusHandler(a *Archiver) http.Handler {
	var (
		mu     sync.Mutex
		cached LakeStatus
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a == nil {
			httpx.WriteJSON(w, http.StatusOK, LakeStatus{Tables: []TableStatus{}})
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if time.Since(cached.ReadAt) > statusCacheFor {
			st := a.Store()
			if st == nil {
				httpx.WriteError(w, http.StatusServiceUnavailable, "lake_unavailable", "object store not reachable yet")
				return
			}
			tables, err := Status(r.Context(), st)
			if err != nil {
				httpx.WriteError(w, http.StatusServiceUnavailable, "lake_unavailable", err.Error())
				return
			}
			cached = LakeStatus{Enabled: true, ReadAt: time.Now().UTC(), Tables: tables}
		}
		httpx.WriteJSON(w, http.StatusOK, cached)
	})
}
