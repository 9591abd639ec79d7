package serve

import (
	"context"
	"fmt"
	"net/http"

	"github.com/clickpipe/clickpipe/internal/httpx"
)

// scope is how a request is answered under partition ownership; the
// responder sets it in the request's context. Without it (one node, or
// ownership off) the API answers every partition from its store, as it
// always has.
type scope struct {
	// owns reports whether this node owns partition p (nil: all of them).
	owns func(p int) bool
	// resolved: the user id is already the merged user (a redirect was
	// followed), so aliases are not followed again.
	resolved bool
}

type scopeKey struct{}

func withScope(ctx context.Context, sc scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, sc)
}

func scopeOf(ctx context.Context) scope {
	sc, _ := ctx.Value(scopeKey{}).(scope)
	return sc
}

// resolve follows q's alias (unless already resolved) and refuses a
// partition this node does not own: an alias into another partition is a
// redirect to the merged user, any other partition an error.
func (sc scope) resolve(a *API, q *request) error {
	if q.user == "" {
		return nil
	}
	p := q.p
	if !sc.resolved {
		if err := a.resolve(q); err != nil {
			return err
		}
	}
	if sc.owns == nil || sc.owns(q.p) {
		return nil
	}
	if q.p != p {
		return movedError{user: q.user}
	}
	return fmt.Errorf("partition %d: %w", q.p, errNotOwner)
}

// movedError answers a query whose user was merged into a user of a
// partition this node does not own: the router asks that partition's
// owner for the merged user (HeaderUser).
type movedError struct{ user string }

func (m movedError) Error() string { return "serve: user merged into " + m.user }

func (m movedError) write(w http.ResponseWriter) {
	w.Header().Set(HeaderUser, m.user)
	httpx.WriteError(w, http.StatusTemporaryRedirect, "moved", "the user was merged into "+m.user)
}
