#!/usr/bin/env bash
# Installs versitygw (Apache-2.0), the S3-compatible server the archive
# integration tests run against, into <repo>/.cache/bin. Idempotent: an
# existing binary of the pinned version is kept. Prints the binary's path;
# export CLICKPIPE_VERSITYGW=<that path> to make the tests require it.
set -euo pipefail
VERSION=v1.8.0
repo=$(cd "$(dirname "$0")/.." && pwd)
bin="$repo/.cache/bin"
stamp="$bin/.versitygw-$VERSION"
if [[ -x "$bin/versitygw" && -f "$stamp" ]]; then
	echo "$bin/versitygw"
	exit 0
fi
mkdir -p "$bin"
GOBIN="$bin" go install "github.com/versity/versitygw/cmd/versitygw@$VERSION" >&2
touch "$stamp"
echo "$bin/versitygw"
