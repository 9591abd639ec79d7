package ingest

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// suppressSet is a hand-written stand-in for the regulation registry.
type suppressSet map[string]bool

func (s suppressSet) Suppressed(id string) bool { return s[id] }

// Suppressed users' events are not stored on any route of any source,
// are counted, and the request is answered as accepted; the other events
// of the same request are stored.
func TestSuppressedUsersNotStoredOnEveryRoute(t *testing.T) {
	pub := &capture{}
	h := startDeps(t, testConfig(), Deps{Publisher: pub, Partitions: 4,
		Suppressor: suppressSet{"sup-user": true, "sup-anon": true, "sup-old": true}})
	ids := []string{`"userId":"sup-user"`, `"anonymousId":"sup-anon"`, `"userId":"u-ok","previousId":"sup-old"`}
	n := 0
	for _, key := range []string{keyWeb, keyServer} {
		for _, route := range []string{"track", "identify", "page", "screen", "group", "alias", "t", "i", "p", "s", "g", "a"} {
			for _, id := range ids {
				n++
				body := fmt.Sprintf(`{"event":"E","name":"N","groupId":"g",%s,"messageId":"m-%d"}`, id, n)
				resp, out := h.do(t, req{path: "/v1/" + route, body: []byte(body), header: map[string]string{"Authorization": basic(key)}})
				require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s: %s", route, id, out)
			}
		}
		for _, route := range []string{"batch", "import"} {
			n++
			body := fmt.Sprintf(`{"batch":[{"type":"track","event":"E","userId":"sup-user","messageId":"m-%d"},`+
				`{"type":"track","event":"E","anonymousId":"sup-anon","messageId":"m-%d-b"},`+
				`{"type":"track","event":"E","userId":"kept","messageId":"kept-%d"}]}`, n, n, n)
			resp, out := h.do(t, req{path: "/v1/" + route, body: []byte(body), header: map[string]string{"Authorization": basic(key)}})
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", route, out)
		}
	}
	body := `{"writeKey":"` + keyWeb + `","batch":[{"type":"page","name":"home","anonymousId":"sup-anon"}]}`
	resp, _ := h.do(t, req{path: "/v1/b", body: []byte(body), header: map[string]string{"Content-Type": "text/plain"}})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	pixel := base64.StdEncoding.EncodeToString([]byte(`{"writeKey":"` + keyWeb + `","userId":"sup-user","event":"Pixel"}`))
	resp, _ = h.do(t, req{method: http.MethodGet, path: "/v1/pixel/track?data=" + pixel})
	require.Equal(t, http.StatusOK, resp.StatusCode)

	stored := pub.decoded(t)
	require.Len(t, stored, 4, "only the unsuppressed events of the batches")
	for _, ev := range stored {
		require.Equal(t, "kept", ev.UserID)
	}
	require.Empty(t, pub.failedItems(t), "invalid items of suppressed users (an alias without previousId) are not kept either")
	require.Equal(t, float64(2*(12*3+2*2)+2), counterValue(t, h, "clickpipe_ingest_suppressed_total"))
}
