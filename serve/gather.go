package serve

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/clickpipe/clickpipe/internal/httpx"
	"github.com/clickpipe/clickpipe/state"
)

// gather answers an aggregate over all partitions (title stats or top
// paths) from every partition's share, merged by the same code that
// merges a single node's partitions: a live view of the shares.
func (rt *Router) gather(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := query{kind: kind, asset: r.PathValue("asset_id")}
		answers, err := rt.askAll(r.Context(), q)
		if err != nil {
			rt.fail(w, err)
			return
		}
		live := state.NewLive(len(answers))
		for p, a := range answers {
			if err := putShare(live, p, q, a); err != nil {
				rt.fail(w, err)
				return
			}
		}
		merged := &API{live: live, cfg: rt.api.cfg, now: rt.api.now}
		h := merged.topPaths
		if kind == kindTitle {
			h = merged.titleStats
		}
		out, _ := h(&request{r: r, p: -1})
		w.Header().Set(HeaderNode, rt.local.node)
		httpx.WriteJSON(w, http.StatusOK, out)
	}
}

// putShare records partition p's answer a to q in live.
func putShare(live *state.Live, p int, q query, a answer) error {
	if a.status != http.StatusOK {
		return &routeError{code: "owner_unavailable", msg: fmt.Sprintf("partition %d: %s answered %d: %s", p, a.node, a.status, a.body)}
	}
	var s share
	if err := json.Unmarshal(a.body, &s); err != nil {
		return &routeError{code: "owner_unavailable", msg: fmt.Sprintf("partition %d: %s sent an unreadable share", p, a.node), err: err}
	}
	live.SetFreshness(p, s.Freshness.state())
	if q.kind == kindTitle && s.Title != nil {
		live.PutTitle(p, q.asset, s.Title.state())
	}
	if q.kind == kindPaths {
		live.PutPaths(p, s.Paths)
	}
	return nil
}
