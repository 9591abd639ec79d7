// Reads one table of a clickpipe lake directory with DuckDB and prints a
// JSON summary. By default only objects listed in the table's manifests are
// read (docs/format/lake.md, "Reading"); with --glob every Parquet file
// under the table's prefix, as most users point DuckDB at a lake
// (read_parquet('<lake>/<table>/**/*.parquet')).
//
//   node query.mjs <lake-dir> <table> [--glob] [--user <id>]
//
// --user adds user_rows: the rows that belong to that userId/anonymousId
// (events: user_id or anonymous_id; sessions: user_key; failed: the id in
// the raw item).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';

const [dir, table, ...opts] = process.argv.slice(2);
const mode = opts.includes('--glob') ? '--glob' : '';
const user = opts.includes('--user') ? opts[opts.indexOf('--user') + 1] : undefined;
if (!dir || !table || (opts.includes('--user') && !user)) {
  console.error('usage: node query.mjs <lake-dir> <table> [--glob] [--user <id>]');
  process.exit(2);
}
const quote = (s) => "'" + s.replaceAll("'", "''") + "'";
const files = [];
let src;
if (mode === '--glob') {
  const tdir = join(dir, table);
  if (!existsSync(tdir) || !readdirSync(tdir, { recursive: true }).some((n) => String(n).endsWith('.parquet'))) {
    console.log(JSON.stringify({ files: 0, rows: 0, user_rows: 0 })); // DuckDB refuses a glob without files
    process.exit(0);
  }
  src = `read_parquet(${quote(join(dir, table, '**', '*.parquet'))}, hive_partitioning = true)`;
} else {
  const mdir = join(dir, '_manifests', table);
  // A manifest inside a wider one was superseded by a compaction: skip it.
  const manifests = readdirSync(mdir).filter((n) => n.endsWith('.json'))
    .map((n) => JSON.parse(readFileSync(join(mdir, n), 'utf8')))
    .sort((a, b) => a.firstSeq - b.firstSeq || b.lastSeq - a.lastSeq);
  let end = 0;
  for (const m of manifests) {
    if (m.lastSeq <= end) continue;
    end = m.lastSeq;
    // A committed object is at its key, or, in the moment before its
    // publication, at _staging/<key>.
    for (const o of m.objects) {
      const at = join(dir, o.key);
      files.push(existsSync(at) ? at : join(dir, '_staging', o.key));
    }
  }
  src = `read_parquet([${files.map(quote).join(',')}], hive_partitioning = true)`;
}

const db = await DuckDBInstance.create(':memory:');
const conn = await db.connect();
await conn.run("SET TimeZone = 'UTC'");
const one = async (sql) => (await conn.runAndReadAll(sql)).getRowObjectsJson();

const out = { files: files.length };
if (table === 'events') {
  Object.assign(out, (await one(`SELECT count(*)::INTEGER AS rows, count(DISTINCT message_id)::INTEGER AS distinct_ids,
      count(DISTINCT (dt, hour))::INTEGER AS partitions,
      sum(CASE WHEN strftime(timestamp, '%Y-%m-%d') = CAST(dt AS VARCHAR)
               AND hour(timestamp) = CAST(hour AS INTEGER) THEN 1 ELSE 0 END)::INTEGER AS rows_in_own_partition,
      sum(position_s) AS sum_position_s, count(asset_id)::INTEGER AS with_asset,
      min(timestamp)::VARCHAR AS min_ts, max(timestamp)::VARCHAR AS max_ts,
      count(*) FILTER (WHERE json_extract_string(properties, '$.asset_id') = asset_id)::INTEGER AS asset_matches
    FROM ${src}`))[0]);
  out.types = Object.fromEntries((await one(`DESCRIBE SELECT timestamp, sent_at, position_s, bot, stream_seq FROM ${src}`))
    .map((r) => [r.column_name, r.column_type]));
} else {
  Object.assign(out, (await one(`SELECT count(*)::INTEGER AS rows FROM ${src}`))[0]);
}
if (user !== undefined) {
  const q = quote(user);
  const match = {
    events: `user_id = ${q} OR anonymous_id = ${q}`,
    sessions: `user_key = ${q}`,
    failed: `contains(decode(raw), ${q})`,
  }[table];
  out.user_rows = (await one(`SELECT count(*)::INTEGER AS n FROM ${src} WHERE ${match}`))[0].n;
}
console.log(JSON.stringify(out));
