#!/usr/bin/env bash
# Installs what the console's browser tests need, pinned: Debian's chromium
# (apt-get) and playwright-core (npm, exact version from
# test/browser/package-lock.json) into .cache/browser. Prints the
# node_modules directory. Set CLICKPIPE_BROWSER=1 to make those tests
# require it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v chromium >/dev/null 2>&1; then
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
dir="$root/.cache/browser"
mkdir -p "$dir"
if ! cmp -s "$root/test/browser/package-lock.json" "$dir/package-lock.json" ||
	[[ ! -f "$dir/node_modules/playwright-core/package.json" ]]; then
	cp "$root/test/browser/package.json" "$root/test/browser/package-lock.json" "$dir/"
	(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts >&2)
fi
echo "$dir/node_modules"
