package ingest

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// clientIP is the connection's peer address, or, when the peer is a
// trusted proxy, the right-most X-Forwarded-For entry that is not itself a
// trusted proxy (entries left of it are client-controlled).
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	peer := parseAddr(r.RemoteAddr)
	if !peer.IsValid() {
		return ""
	}
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	hops := r.Header.Values("X-Forwarded-For")
	var addrs []string
	for _, h := range hops {
		addrs = append(addrs, strings.Split(h, ",")...)
	}
	for i := len(addrs) - 1; i >= 0; i-- {
		a := parseAddr(strings.TrimSpace(addrs[i]))
		if !a.IsValid() {
			break
		}
		if !isTrusted(a, trusted) {
			return a.String()
		}
		peer = a
	}
	return peer.String()
}

func parseAddr(s string) netip.Addr {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// anonymize zeroes the last octet of an IPv4 address and the last 80 bits
// of an IPv6 address (the Google Analytics convention). Unparseable input
// is dropped rather than kept.
func anonymize(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, _ := a.Prefix(bits)
	return p.Addr().String()
}
