#!/usr/bin/env bash
# Early stopping on synthetic learning curves (four families: mixed, slow-best,
# crossing, noisy), through the real dispatcher and SQLite, 2 workers: for
# asha, asha in promotion mode, hyperband (both modes) and median, the epochs
# trained against the full grid, the distance of the best recorded value to
# the grid's best, how many seeds got within 1 point and how soon; then TPE
# and random searches with and without stopping, and the stopper's decision time.
#   bench/stopping-sim.sh [SEEDS]     (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet --example stopping_sim -- "$@" 2>/dev/null
