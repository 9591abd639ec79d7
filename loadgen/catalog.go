package loadgen

import (
	"math/rand"
	"strconv"
)

// title is one catalog entry: a film, or one series with its episodes.
type title struct {
	id      string // content_asset_id of a film, program id of a series
	name    string
	genre   string
	series  bool
	seasons int
	eps     int // episodes per season
	length  int // seconds; per episode for a series
}

var genres = []string{"drama", "comedy", "thriller", "documentary", "kids", "sci-fi", "romance", "horror"}

// newCatalog builds n titles from r: about a third series. Index 0 is the
// premiere title (a series) when premiere mode is on.
func newCatalog(r *rand.Rand, n int) []title {
	cat := make([]title, n)
	for i := range cat {
		t := title{
			id:    "t" + strconv.Itoa(i),
			name:  "Title " + strconv.Itoa(i),
			genre: genres[r.Intn(len(genres))],
		}
		if i == 0 || r.Float64() < 0.35 {
			t.series = true
			t.seasons = 1 + r.Intn(5)
			t.eps = 6 + r.Intn(5)
			t.length = 60 * (25 + r.Intn(36))
		} else {
			t.length = 60 * (80 + r.Intn(71))
		}
		cat[i] = t
	}
	return cat
}

// assetID is the content_asset_id of season s, episode e of t (1-based),
// or of the film itself.
func (t *title) appendAssetID(dst []byte, s, e int) []byte {
	dst = append(dst, t.id...)
	if t.series {
		dst = append(dst, 's')
		dst = strconv.AppendInt(dst, int64(s), 10)
		dst = append(dst, 'e')
		dst = strconv.AppendInt(dst, int64(e), 10)
	}
	return dst
}
