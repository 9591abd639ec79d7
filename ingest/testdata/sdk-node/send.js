// Drives the real, unmodified @segment/analytics-node SDK against a
// clickpipe ingest server. Env: CP_HOST (http://127.0.0.1:port),
// CP_WRITE_KEY. Prints one line per delivery outcome; exits 1 on any
// failed delivery.
'use strict';
const { Analytics } = require('@segment/analytics-node');

const analytics = new Analytics({
  writeKey: process.env.CP_WRITE_KEY,
  host: process.env.CP_HOST,
  path: '/v1/batch',
  flushAt: 4,
  flushInterval: 200,
  maxRetries: 3,
});

let failed = 0;
analytics.on('error', (err) => { failed++; console.log('error', err.code || '', err.reason ? String(err.reason) : ''); });
analytics.on('http_request', (req) => console.log('http_request', req.url));

const user = process.env.CP_USER || 'node-user-1';
analytics.identify({ userId: user, traits: { email: 'u1@example.com' } });
analytics.track({ userId: user, event: 'Video Playback Started', properties: { title_id: 't-42', position_ms: 1200 } });
analytics.page({ userId: user, name: 'Home', properties: { url: 'http://example.test/' } });
analytics.screen({ userId: user, name: 'Player' });

analytics.closeAndFlush({ timeout: 20000 }).then(() => {
  console.log('done failed=' + failed);
  process.exit(failed === 0 ? 0 : 1);
});
