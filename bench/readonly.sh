#!/usr/bin/env bash
# Wall time and peak memory of `sweep report/status/show` on the demo database.
#   bench/readonly.sh [DB]     (default results/results.db: run `make demo` first)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/readonly.py "$@"
