// Sends one viewing session through the real, unmodified
// @segment/analytics-node SDK with explicit event times: browse (home,
// row impression, search, title detail), play, heartbeats every 10 s,
// pause and resume, seek, rebuffer, exit. Env: CP_HOST, CP_WRITE_KEY,
// CP_USER, CP_BASE (ISO time of the session start).
'use strict';
const { Analytics } = require('@segment/analytics-node');

const analytics = new Analytics({
  writeKey: process.env.CP_WRITE_KEY, host: process.env.CP_HOST, path: '/v1/batch',
  // Several batches, as a real flush sends them: the SDK may deliver the
  // newer one first, and the older one must still be placed exactly
  // (docs/domain.md "Sessions": the fold point waits out detail_window of
  // arrival time).
  flushAt: 8, flushInterval: 200, maxRetries: 3,
});
let failed = 0;
analytics.on('error', (err) => { failed++; console.log('error', err.code || '', String(err.reason || '')); });

const user = process.env.CP_USER;
const base = Date.parse(process.env.CP_BASE);
const at = (s) => new Date(base + s * 1000);
const video = (s, event, position, extra) => analytics.track({
  userId: user, event, timestamp: at(s),
  properties: Object.assign({ content_asset_id: 't-42', asset_id: 't-42', session_id: 'play-1',
    position, total_length: 3600, program: 'Stranger Things', season: 1, episode: 1 }, extra || {}),
});

analytics.page({ userId: user, name: 'home', timestamp: at(0) });
analytics.track({ userId: user, event: 'Row Impression', timestamp: at(5), properties: { row_id: 'trending' } });
analytics.track({ userId: user, event: 'Search Performed', timestamp: at(20), properties: { query: 'stranger' } });
analytics.page({ userId: user, name: 'title', timestamp: at(40) });
analytics.track({ userId: user, event: 'Title Clicked', timestamp: at(50), properties: { content_asset_id: 't-42' } });
video(60, 'Video Playback Started', 0);
for (let i = 1; i <= 12; i++) video(60 + 10 * i, 'Video Content Playing', 10 * i); // 120 s
video(185, 'Video Playback Paused', 125);
video(215, 'Video Playback Resumed', 125);
for (let i = 1; i <= 6; i++) video(215 + 10 * i, 'Video Content Playing', 125 + 10 * i); // 185 s
video(280, 'Video Playback Seek Completed', 600, { seek_position: 600 });
video(285, 'Video Playback Buffer Started', 600);
video(290, 'Video Playback Buffer Completed', 600);
for (let i = 1; i <= 3; i++) video(290 + 10 * i, 'Video Content Playing', 600 + 10 * i);
video(325, 'Video Playback Exited', 635);

analytics.closeAndFlush({ timeout: 20000 }).then(() => {
  console.log('done failed=' + failed);
  process.exit(failed === 0 ? 0 : 1);
});
