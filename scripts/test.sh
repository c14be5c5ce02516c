#!/usr/bin/env bash
# The project's test command (see README): all packages, with any extra flags passed through (CI adds -race).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
exec go test -count=1 -timeout 40m "$@" ./...
