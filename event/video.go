package event

// Video holds the Segment Video Spec properties that decide which asset
// an event is about, where its playhead is and how long the content is.
// Every consumer (the sessionizer and the lake) fills it from an event's
// properties and asks its methods, so both apply one rule (DOMAIN.md §6):
// the asset is content_asset_id, else asset_id, else the first element of
// content_asset_ids; position and total_length are seconds, and the
// millisecond variants count only under their explicit names
// (position_ms, total_length_ms) when the seconds property is absent.
type Video struct {
	ContentAssetID, AssetID string
	// FirstContentAssetID is content_asset_ids[0].
	FirstContentAssetID string

	Position, PositionMs       float64
	HasPosition, HasPositionMs bool
	TotalLength, TotalLengthMs float64
	HasTotalLength, HasTotalMs bool
}

// Asset is the asset id the event is about ("" when none).
func (v *Video) Asset() string {
	switch {
	case v.ContentAssetID != "":
		return v.ContentAssetID
	case v.AssetID != "":
		return v.AssetID
	}
	return v.FirstContentAssetID
}

// PositionMillis is the playhead in milliseconds, ok false when the event
// carries none.
func (v *Video) PositionMillis() (int64, bool) {
	switch {
	case v.HasPosition:
		return int64(v.Position * 1000), true
	case v.HasPositionMs:
		return int64(v.PositionMs), true
	}
	return 0, false
}

// LengthMillis is the content length in milliseconds, 0 when unknown.
func (v *Video) LengthMillis() int64 {
	switch {
	case v.HasTotalLength && v.TotalLength > 0:
		return int64(v.TotalLength * 1000)
	case v.HasTotalMs && v.TotalLengthMs > 0:
		return int64(v.TotalLengthMs)
	}
	return 0
}
