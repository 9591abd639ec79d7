package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
)

// keyring maps write keys to sources, compared in constant time over
// fixed-length digests so neither content nor length leaks.
type keyring struct {
	digests [][32]byte
	names   []string
	keys    []string
}

func newKeyring(sources []Source) *keyring {
	k := &keyring{}
	for _, s := range sources {
		k.digests = append(k.digests, sha256.Sum256([]byte(s.WriteKey)))
		k.names = append(k.names, s.Name)
		k.keys = append(k.keys, s.WriteKey)
	}
	return k
}

// lookup returns the index of key's source or -1, touching every entry.
func (k *keyring) lookup(key string) int {
	if key == "" {
		return -1
	}
	d := sha256.Sum256([]byte(key))
	found := -1
	for i := range k.digests {
		if subtle.ConstantTimeCompare(d[:], k.digests[i][:]) == 1 {
			found = i
		}
	}
	return found
}

// headerKey extracts a write key from Basic auth, with or without the
// trailing colon. Bearer tokens (Segment OAuth) carry no write key and are
// ignored: the key then comes from the body.
func headerKey(r *http.Request) string {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "basic") {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return ""
	}
	user, _, _ := strings.Cut(string(raw), ":")
	return user
}

// authenticate resolves the source of a request: the Basic header key if
// present, else the body key. Both present and different is refused.
func (k *keyring) authenticate(header, body string) (int, error) {
	if header != "" && body != "" && subtle.ConstantTimeCompare([]byte(header), []byte(body)) != 1 {
		return -1, ErrKeyConflict
	}
	key := header
	if key == "" {
		key = body
	}
	i := k.lookup(key)
	if i < 0 {
		if key == "" {
			return -1, fmt.Errorf("no write key: %w", ErrUnauthorized)
		}
		return -1, ErrUnauthorized
	}
	return i, nil
}
