package process

import (
	"time"

	"github.com/clickpipe/clickpipe/event"
)

// userCache keeps the decoded user states a partition's last commits
// wrote, so a user active in consecutive batches is not read and decoded
// again. It is only an accelerator: a miss reads the store. The worker is
// the single writer of its partitions' user records, an entry is taken out
// when a transaction uses it and put back only after that transaction
// committed (a failed or retried transaction reads the store), and an
// entry is dropped well before the record's TTL could expire it.
type userCache struct {
	max    int
	maxAge time.Duration
	m      map[string]cachedUser
}

type cachedUser struct {
	st *event.UserState
	at time.Time
}

// maxCachedUsers bounds a partition's cache.
const maxCachedUsers = 4096

func (p *Processor) newUserCache() *userCache {
	return &userCache{max: maxCachedUsers, maxAge: min(time.Minute, p.cfg.UserTTL/2), m: map[string]cachedUser{}}
}

// take removes and returns key's committed state.
func (c *userCache) take(key string, now time.Time) (*event.UserState, bool) {
	if c == nil {
		return nil, false
	}
	e, ok := c.m[key]
	if !ok {
		return nil, false
	}
	delete(c.m, key)
	return e.st, now.Sub(e.at) < c.maxAge
}

// put records st as key's state committed at now.
func (c *userCache) put(key string, st *event.UserState, now time.Time) {
	if c == nil {
		return
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[key] = cachedUser{st: st, at: now}
}
