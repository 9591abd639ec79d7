package ingest

import (
	"strings"
	"sync"

	"github.com/clickpipe/clickpipe/event"
)

// parseUA derives platform, device type, OS and browser from a user agent
// with a small ordered rule list. It is deliberately coarse: enough to split
// dashboards by platform, not a device database.
func parseUA(ua string) event.Device {
	if ua == "" {
		return event.Device{}
	}
	l := strings.ToLower(ua)
	var d event.Device
	d.OS = firstMatch(l, osRules)
	d.Browser = firstMatch(l, browserRules)
	switch {
	case isServerLibrary(l):
		d.Platform, d.Type = "server", "server"
	case containsAny(l, "smart-tv", "smarttv", "hbbtv", "appletv", "apple tv", "googletv", "android tv", "crkey", "roku", "aft", "bravia", "tizen", "webos", "playstation", "xbox"):
		d.Platform, d.Type = "tv", "tv"
	case containsAny(l, "ipad", "tablet") || (strings.Contains(l, "android") && !strings.Contains(l, "mobile")):
		d.Platform, d.Type = "mobile", "tablet"
	case containsAny(l, "iphone", "ipod", "mobile", "okhttp", "cfnetwork", "dalvik"):
		d.Platform, d.Type = "mobile", "phone"
	case strings.HasPrefix(l, "mozilla/"):
		d.Platform, d.Type = "web", "desktop"
	}
	return d
}

type uaRule struct{ token, name string }

// Order matters: the first token found wins (Edge and Opera also say
// Chrome; Chrome also says Safari; Android also says Linux).
var osRules = []uaRule{
	{"windows", "Windows"}, {"iphone", "iOS"}, {"ipad", "iOS"}, {"ipod", "iOS"}, {"cfnetwork", "iOS"},
	{"mac os x", "macOS"}, {"macintosh", "macOS"}, {"android", "Android"}, {"cros", "ChromeOS"},
	{"tizen", "Tizen"}, {"webos", "webOS"}, {"roku", "Roku"}, {"playstation", "PlayStation"},
	{"xbox", "Xbox"}, {"linux", "Linux"},
}

var browserRules = []uaRule{
	{"edg/", "Edge"}, {"edge/", "Edge"}, {"opr/", "Opera"}, {"opera", "Opera"},
	{"samsungbrowser", "Samsung Internet"}, {"firefox/", "Firefox"}, {"fxios", "Firefox"},
	{"crios", "Chrome"}, {"headlesschrome", "Chrome"}, {"chrome/", "Chrome"},
	{"safari/", "Safari"}, {"msie", "Internet Explorer"}, {"trident/", "Internet Explorer"},
}

func firstMatch(l string, rules []uaRule) string {
	for _, r := range rules {
		if strings.Contains(l, r.token) {
			return r.name
		}
	}
	return ""
}

func containsAny(l string, tokens ...string) bool {
	for _, t := range tokens {
		if strings.Contains(l, t) {
			return true
		}
	}
	return false
}

// isServerLibrary recognises server-side SDKs sending on their own behalf.
func isServerLibrary(l string) bool {
	return containsAny(l, "analytics-node", "analytics-go", "analytics-python", "analytics-ruby", "analytics-java", "analytics-php", "rudder", "go-http-client")
}

// isBrowserLibrary reports a library name of a browser SDK.
func isBrowserLibrary(name string) bool {
	return strings.HasPrefix(name, "analytics.js") || strings.HasPrefix(name, "analytics-next")
}

// botTokens are user-agent fragments of crawlers, link previewers,
// monitoring and browser-automation tools.
var botTokens = []string{
	"bot", "crawl", "spider", "slurp", "mediapartners-google", "facebookexternalhit", "embedly",
	"preview", "pingdom", "uptimerobot", "statuscake", "lighthouse", "pagespeed", "gtmetrix",
	"headlesschrome", "phantomjs", "selenium", "puppeteer", "playwright", "electron/", "python-requests",
	"scrapy", "wget/", "httpclient", "axios/", "node-fetch",
}

// isBot applies the list plus one behavioural rule: an event that claims a
// browser library (analytics.js) but carries no user agent did not come
// from a browser, which always sends one; it is a script replaying
// browser payloads.
func isBot(ua string, browserLibWithoutUA bool) bool {
	if browserLibWithoutUA {
		return true
	}
	if ua == "" {
		return false
	}
	l := strings.ToLower(ua)
	if isServerLibrary(l) {
		return false
	}
	return containsAny(l, botTokens...)
}

// uaInfo is what a user agent alone decides: its device and whether it
// is on the bot list.
type uaInfo struct {
	ua     string // the key, so that known can hand it out
	device event.Device
	bot    bool
}

// uaCache remembers uaInfo for recent user agents: traffic repeats a few
// strings constantly and parsing one costs two lower-casings and dozens of
// substring searches. It keeps two generations of at most max entries:
// when the current one fills up it becomes the previous one, so the
// strings in use stay cached (a hit in the previous generation moves the
// entry forward) and memory stays bounded without LRU bookkeeping.
type uaCache struct {
	max int
	mu  sync.RWMutex
	cur map[string]uaInfo
	old map[string]uaInfo
}

// maxCachedUA bounds the key length; longer user agents are parsed each time.
const maxCachedUA = 512

func newUACache(max int) *uaCache {
	return &uaCache{max: max, cur: make(map[string]uaInfo, max)}
}

// lookup returns the uaInfo of a non-empty user agent. A nil cache parses.
func (c *uaCache) lookup(ua string) uaInfo {
	if c == nil || len(ua) > maxCachedUA {
		return parseUAInfo(ua)
	}
	c.mu.RLock()
	info, ok := c.cur[ua]
	c.mu.RUnlock()
	if ok {
		return info
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if info, ok = c.cur[ua]; ok {
		return info
	}
	if info, ok = c.old[ua]; !ok {
		info = parseUAInfo(ua)
	}
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[string]uaInfo, c.max)
	}
	c.cur[ua] = info
	return info
}

func parseUAInfo(ua string) uaInfo {
	return uaInfo{ua: ua, device: parseUA(ua), bot: isBot(ua, false)}
}

// known returns the cached string equal to ua, if any.
func (c *uaCache) known(ua []byte) (string, bool) {
	if c == nil {
		return "", false
	}
	c.mu.RLock()
	info, ok := c.cur[string(ua)]
	if !ok {
		info, ok = c.old[string(ua)]
	}
	c.mu.RUnlock()
	return info.ua, ok
}
