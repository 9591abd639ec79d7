package loadgen

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"time"
)

// Population describes the simulated subscribers and what they watch.
type Population struct {
	// Seed makes the traffic reproducible: the same seed, shard count and
	// configuration produce the same events and messageIds.
	Seed int64
	// RunID goes into every messageId so repeated runs against one server
	// are not deduplicated away; empty means the seed.
	RunID string
	// Users is the number of subscribers.
	Users int
	// ActiveSessions is how many sessions are in progress at once across
	// all shards; with heartbeats every 10 s it sets how fast simulated
	// time runs relative to the send rate.
	ActiveSessions int
	// Titles is the catalog size; popularity is Zipf with exponent ZipfS (>1).
	Titles int
	ZipfS  float64
	// PremiereShare is the share of plays that go to title t0 (premiere
	// mode); 0 turns it off.
	PremiereShare float64
	// AnonymousShare of users never log in and send only anonymousId.
	AnonymousShare float64
	// BotShare of users send with a crawler user agent and never play.
	BotShare float64
	// IdentifyShare is the probability that a session starts with identify.
	IdentifyShare float64
	// Start is the simulated time at which sessions begin.
	Start time.Time
	// Accelerated lets simulated time run free of the wall clock, as fast
	// as the send rate drives it (with the default ActiveSessions about 5x
	// real time at 20k events/s), for reproducible offline traffic. By
	// default simulated time never runs ahead of the wall clock: when every
	// session's next event is still in the future, the generator starts
	// another session now (as a larger audience would) and, once every user
	// is busy, stamps the event with the wall clock. Capped traffic is
	// reproducible only as long as it never catches up with the wall clock.
	Accelerated bool
	// WallClock stamps events with the wall-clock time at generation
	// instead of the simulated time (which only orders them), so the
	// event-to-queryable latency of a live pipeline can be measured.
	WallClock bool
}

// DefaultPopulation returns the documented defaults.
func DefaultPopulation() Population {
	return Population{
		Seed: 1, Users: 100_000, ActiveSessions: 20_000, Titles: 2_000, ZipfS: 1.1,
		AnonymousShare: 0.03, IdentifyShare: 0.05,
	}
}

// Validate reports the first invalid field.
func (p Population) Validate() error {
	var errs []error
	if p.Users < 1 {
		errs = append(errs, fmt.Errorf("users: %d is below 1", p.Users))
	}
	if p.ActiveSessions < 1 {
		errs = append(errs, fmt.Errorf("active sessions: %d is below 1", p.ActiveSessions))
	}
	if p.Titles < 2 {
		errs = append(errs, fmt.Errorf("titles: %d is below 2", p.Titles))
	}
	if p.ZipfS <= 1 {
		errs = append(errs, fmt.Errorf("zipf exponent: %g must be above 1", p.ZipfS))
	}
	for name, v := range map[string]float64{"premiere share": p.PremiereShare, "anonymous share": p.AnonymousShare,
		"bot share": p.BotShare, "identify share": p.IdentifyShare} {
		if v < 0 || v > 1 {
			errs = append(errs, fmt.Errorf("%s: %g is outside 0..1", name, v))
		}
	}
	return errors.Join(errs...)
}

// Platform of a simulated user.
type Platform uint8

// Platforms.
const (
	Web Platform = iota
	Mobile
	TV
	numPlatforms
)

func (p Platform) String() string { return [...]string{"web", "mobile", "tv"}[p] }

// habits are a platform's session habits.
type habits struct {
	share     float64       // of users
	browse    float64       // mean browse actions per session
	gap       time.Duration // mean time between browse actions
	playProb  float64       // a browse phase ends in playback
	binge     float64       // a finished episode continues with the next
	pause     float64       // per heartbeat
	seek      float64       // per heartbeat
	rebuffer  float64       // per heartbeat
	screens   bool          // screen (apps) rather than page (web) views
	userAgent []string
}

var platformHabits = [numPlatforms]habits{
	Web: {share: 0.40, browse: 9, gap: 7 * time.Second, playProb: 0.55, binge: 0.25, pause: 0.006, seek: 0.004, rebuffer: 0.003,
		userAgent: []string{
			"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
			"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
			"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
		}},
	Mobile: {share: 0.35, browse: 5, gap: 4 * time.Second, playProb: 0.6, binge: 0.3, pause: 0.012, seek: 0.006, rebuffer: 0.008, screens: true,
		userAgent: []string{
			"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
			"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
		}},
	TV: {share: 0.25, browse: 4, gap: 9 * time.Second, playProb: 0.85, binge: 0.65, pause: 0.004, seek: 0.002, rebuffer: 0.002, screens: true,
		userAgent: []string{
			"Mozilla/5.0 (SMART-TV; Linux; Tizen 7.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/5.0 TV Safari/537.36",
			"Roku/DVP-13.0 (13.0.0.4170)",
			"Mozilla/5.0 (Linux; Android 12; BRAVIA 4K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 googletv",
		}},
}

const botUserAgent = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

// user is what is fixed about a subscriber, derived from the seed and its
// index so every shard agrees without shared state.
type user struct {
	platform  Platform
	anonymous bool
	bot       bool
	ua        string
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// unit maps a hash to [0,1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

func (p *Population) user(i int) user {
	h := splitmix(uint64(p.Seed)<<32 ^ uint64(i))
	u := user{anonymous: unit(splitmix(h^1)) < p.AnonymousShare, bot: unit(splitmix(h^2)) < p.BotShare}
	x := unit(h)
	for pl := range numPlatforms {
		if x < platformHabits[pl].share || pl == numPlatforms-1 {
			u.platform = pl
			break
		}
		x -= platformHabits[pl].share
	}
	uas := platformHabits[u.platform].userAgent
	u.ua = uas[splitmix(h^3)%uint64(len(uas))]
	if u.bot {
		u.ua = botUserAgent
	}
	return u
}

// Item describes one generated event.
type Item struct {
	// Seq numbers the generator's events; the messageId is derived from it.
	Seq uint64
	// Kind is the Segment call type.
	Kind Kind
	// Time is the simulated event time.
	Time time.Time
}

// Kind is a Segment call type.
type Kind uint8

// Kinds.
const (
	Track Kind = iota
	Page
	Screen
	Identify
)

var kindNames = [...]string{"track", "page", "screen", "identify"}

func (k Kind) String() string { return kindNames[k] }

// Generator produces one shard's events: users i with i%shards == shard.
// It is not safe for concurrent use; give each sender its own.
type Generator struct {
	pop      *Population
	lib      []byte // ,"context":{"library":{...} prefix, ready to append
	shard    int
	shards   int
	r        *rand.Rand
	zipf     *rand.Zipf
	cat      []title
	active   []bool // by local user index
	nActive  int    // true entries of active
	capped   bool   // event time never ahead of the wall clock
	clamped  uint64 // events stamped with the wall clock by the cap
	sessions sessionHeap
	seq      uint64
	idPrefix []byte
	playSeq  uint64
	now      simTime // simulated time of the event being encoded
	tsSec    int64   // second whose formatted prefix tsPrefix holds
	tsPrefix []byte  // "2006-01-02T15:04:05."
}

// NewGenerator returns the generator of shard (0-based) of shards; lib is
// the SDK that context.library names.
func NewGenerator(pop Population, lib Library, shard, shards int) (*Generator, error) {
	if err := pop.Validate(); err != nil {
		return nil, fmt.Errorf("population: %w", err)
	}
	if shards < 1 || shard < 0 || shard >= shards {
		return nil, fmt.Errorf("population: shard %d of %d", shard, shards)
	}
	if pop.Start.IsZero() {
		pop.Start = time.Unix(1_790_000_000, 0)
	}
	if pop.RunID == "" {
		pop.RunID = strconv.FormatInt(pop.Seed, 10)
	}
	catRand := rand.New(rand.NewSource(pop.Seed))
	g := &Generator{
		pop: &pop, shard: shard, shards: shards,
		r:      rand.New(rand.NewSource(pop.Seed*1_000_003 + int64(shard) + 1)),
		cat:    newCatalog(catRand, pop.Titles),
		capped: !pop.Accelerated && !pop.WallClock,
	}
	g.lib = fmt.Appendf(nil, `,"context":{"library":{"name":%q,"version":%q},"userAgent":"`, lib.Name, lib.Version)
	g.zipf = rand.NewZipf(g.r, pop.ZipfS, 1, uint64(pop.Titles-1))
	g.idPrefix = fmt.Appendf(nil, "lg-%s-%d-", pop.RunID, shard)
	local := (pop.Users - shard + shards - 1) / shards
	if local < 1 {
		local = 1
	}
	g.active = make([]bool, local)
	n := max(1, min(local, (pop.ActiveSessions+shards-1)/shards))
	// Sessions begin within a minute of Start: after it when simulated time
	// runs free, before it when capped, so that the first events are not all
	// in the future and do not make the generator start extra sessions.
	first, spread := simTime(pop.Start.UnixNano()), time.Minute
	if g.capped {
		first = first.Add(-spread)
	}
	for range n {
		s := g.newSession(first.Add(time.Duration(g.r.Int63n(int64(spread)))))
		heap.Push(&g.sessions, s)
	}
	return g, nil
}

// AppendMessageID appends the messageId of event seq.
func (g *Generator) AppendMessageID(dst []byte, seq uint64) []byte {
	dst = append(dst, g.idPrefix...)
	return strconv.AppendUint(dst, seq, 10)
}

// Next appends one event as a JSON object to dst and describes it.
func (g *Generator) Next(dst []byte) ([]byte, Item) {
	for {
		s := g.sessions[0]
		at := s.next
		g.now = at
		if g.pop.WallClock {
			g.now = simTime(time.Now().UnixNano())
		} else if g.capped {
			if wall := simTime(time.Now().UnixNano()); at > wall {
				if g.nActive < len(g.active)*3/4 {
					heap.Push(&g.sessions, g.newSession(wall))
					continue
				}
				g.now = wall
				g.clamped++
			}
		}
		n := len(dst)
		dst, kind, done := s.step(g, dst)
		if done {
			g.release(s.local)
			*s = *g.newSession(at.Add(time.Duration(g.r.Int63n(int64(30 * time.Second)))))
		}
		heap.Fix(&g.sessions, 0)
		if len(dst) > n {
			g.seq++
			return dst, Item{Seq: g.seq, Kind: kind, Time: g.now.time().Truncate(time.Millisecond)}
		}
	}
}

func (g *Generator) newSession(at simTime) *session {
	local := g.r.Intn(len(g.active))
	for range 8 {
		if !g.active[local] {
			break
		}
		local = g.r.Intn(len(g.active))
	}
	if !g.active[local] {
		g.active[local] = true
		g.nActive++
	}
	idx := local*g.shards + g.shard
	return &session{local: local, index: idx, user: g.pop.user(idx), next: at}
}

func (g *Generator) release(local int) {
	if g.active[local] {
		g.active[local] = false
		g.nActive--
	}
}

// Clamped is how many events the generator stamped with the wall clock
// because their simulated time was still in the future and every user was
// already in a session; see Population.Accelerated.
func (g *Generator) Clamped() uint64 { return g.clamped }

// pickTitle draws the next title to play: the premiere title with
// PremiereShare, otherwise by Zipf popularity.
func (g *Generator) pickTitle() *title {
	if g.pop.PremiereShare > 0 && g.r.Float64() < g.pop.PremiereShare {
		return &g.cat[0]
	}
	return &g.cat[g.zipf.Uint64()]
}

// exp draws an exponential duration with mean m.
func (g *Generator) exp(m time.Duration) time.Duration {
	return time.Duration(g.r.ExpFloat64()*float64(m)) + 200*time.Millisecond
}

type sessionHeap []*session

func (h sessionHeap) Len() int           { return len(h) }
func (h sessionHeap) Less(i, j int) bool { return h[i].next < h[j].next }
func (h sessionHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *sessionHeap) Push(x any)        { *h = append(*h, x.(*session)) }
func (h *sessionHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}

// simTime is simulated time in Unix nanoseconds: cheaper to compare and
// advance than time.Time in the session heap.
type simTime int64

func (t simTime) Add(d time.Duration) simTime { return t + simTime(d) }
func (t simTime) time() time.Time             { return time.Unix(0, int64(t)).UTC() }

// appendNow appends g.now as RFC 3339 UTC with milliseconds, formatting
// the date part once per simulated second.
func (g *Generator) appendNow(dst []byte) []byte {
	ns := int64(g.now)
	sec, msec := ns/1e9, (ns%1e9)/1e6
	if sec != g.tsSec || g.tsPrefix == nil {
		g.tsSec = sec
		g.tsPrefix = time.Unix(sec, 0).UTC().AppendFormat(g.tsPrefix[:0], "2006-01-02T15:04:05.")
	}
	dst = append(dst, g.tsPrefix...)
	return append(dst, byte('0'+msec/100), byte('0'+msec/10%10), byte('0'+msec%10), 'Z')
}
