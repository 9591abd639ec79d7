package buffer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/clickpipe/clickpipe/buffer"
	"github.com/clickpipe/clickpipe/buffer/buffertest"
)

// publishFailed stores n FAILED messages of two items each.
func publishFailed(t *testing.T, b *buffer.Buffer, n int) {
	for i := range n {
		body := fmt.Sprintf(`{"reason":"no_user_anon_id","messageId":"m%d-0"}`+"\n"+`{"reason":"item_too_large","messageId":"m%d-1"}`+"\n", i, i)
		_, err := b.PublishFailed(context.Background(), []byte(body), map[string]string{"Clickpipe-Events": "2"})
		require.NoError(t, err)
	}
}

func getJSON(t *testing.T, h http.Handler, target string, v any) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	if rec.Code == http.StatusOK {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), v))
	}
	return rec.Code
}

func TestRecentFailed(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	var out buffer.RecentFailed
	require.Equal(t, http.StatusOK, getJSON(t, b.RecentFailedHandler(), "/v1/failed/recent", &out))
	require.Empty(t, out.Items)

	publishFailed(t, b, 3)
	require.Equal(t, http.StatusOK, getJSON(t, b.RecentFailedHandler(), "/v1/failed/recent?limit=3", &out))
	var ids []string
	for _, it := range out.Items {
		var f struct{ MessageID string }
		require.NoError(t, json.Unmarshal(it, &f))
		ids = append(ids, f.MessageID)
	}
	require.Equal(t, []string{"m2-1", "m2-0", "m1-1"}, ids, "newest first")
	require.Equal(t, uint64(3), out.LastSeq)
	require.Equal(t, http.StatusBadRequest, getJSON(t, b.RecentFailedHandler(), "/v1/failed/recent?limit=0", &out))
}

func TestFailedPages(t *testing.T) {
	b := buffertest.New(t, buffertest.Config(), "")
	publishFailed(t, b, 5)
	var all []buffer.FailedRecord
	after := uint64(0)
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		var page buffer.FailedPage
		require.Equal(t, http.StatusOK, getJSON(t, b.FailedPageHandler(), fmt.Sprintf("/v1/failed?after_seq=%d&limit=2", after), &page))
		all = append(all, page.Items...)
		after = page.NextSeq
		if page.NextSeq >= page.LastSeq {
			break
		}
	}
	require.Len(t, all, 10)
	for i, r := range all {
		require.Equal(t, uint64(i/2+1), r.Seq)
		require.Equal(t, i%2, r.Index)
	}
	var page buffer.FailedPage
	require.Equal(t, http.StatusBadRequest, getJSON(t, b.FailedPageHandler(), "/v1/failed?after_seq=x", &page))
	require.Equal(t, http.StatusBadRequest, getJSON(t, b.FailedPageHandler(), "/v1/failed?limit=1001", &page))
}
