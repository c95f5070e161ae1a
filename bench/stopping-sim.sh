#!/usr/bin/env bash
# Early stopping on synthetic learning curves, through the real dispatcher and
# SQLite: epochs spent against the full grid, regret of the chosen
# configuration and decision time, for none / asha / hyperband / median.
#   bench/stopping-sim.sh [N_TRIALS...]     (default: 81 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet --example stopping_sim -- "$@" 2>/dev/null
