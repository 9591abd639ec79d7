#!/usr/bin/env bash
# Installs the pinned DuckDB Node API (prebuilt, from the npm registry) into
# test/duckdb/node_modules (gitignored) for the lake read-back tests. Set
# CLICKPIPE_DUCKDB=1 to make those tests require it.
set -euo pipefail
dir="$(cd "$(dirname "$0")/.." && pwd)/test/duckdb"
cd "$dir"
if [[ -f node_modules/@duckdb/node-api/package.json && node_modules/.package-lock.json -nt package-lock.json ]]; then
	exit 0
fi
npm ci --no-audit --no-fund >&2
