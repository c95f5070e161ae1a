#!/usr/bin/env bash
# `sweep serve` on a database of 10,000 trials x 30 epochs (bench/serve_db.py adds
# them beside a one-trial sweep that the real coordinator ran with the stand-in
# worker, so the schema is sweep's own). Prints, side by side with the targets:
# every API endpoint's time (first and warm), the sweep page's first render in
# headless Chromium, the server's RSS, and 50 pages following live updates.
#
# It runs this sweep twice: on that database, and on a copy without the
# `metrics_epoch_values` index (as a database made by an older sweep is). With
# BASELINE=PATH (an older `sweep` binary, e.g. one built from main) it runs that
# one first, on the copy: before and after in one run, on one machine.
# Usage: [BASELINE=old/sweep] bench/serve.sh [TRIALS] [EPOCHS]   (needs chromium and python3)
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-10000}
epochs=${2:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nice -n 10 cargo build --release --bin sweep >/dev/null
target/release/sweep data demo "$work/data" --per-class 2 --image-size 8 >/dev/null
printf '[sweep]\nname = "schema"\ndataset = "%s"\n[defaults]\nepochs = 1\n[grid]\nlr = [0.01]\n' "$work/data" >"$work/s.toml"
SWEEP_WORKER_CMD="$PWD/tests/fake_worker.py" FAKE_MODE=ok SWEEP_FAKE_GPUS=0 \
  target/release/sweep --db "$work/bench.db" run "$work/s.toml" --results "$work/results" --plain >/dev/null 2>&1
python3 bench/serve_db.py "$work/bench.db" "$trials" "$epochs"
ls -l "$work/bench.db" | awk '{printf "database: %.0f MB\n", $5 / 1e6}'
# The copy an older sweep made: no index, no record of its migration.
python3 - "$work/bench.db" "$work/old.db" <<'PY'
import sqlite3, sys
src = sqlite3.connect(sys.argv[1])
src.execute("VACUUM INTO ?", (sys.argv[2],))
con = sqlite3.connect(sys.argv[2])
con.execute("DROP INDEX metrics_epoch_values")
con.execute("DELETE FROM _sqlx_migrations WHERE version = 20261207000010")
con.commit()
con.execute("VACUUM")
PY
ls -l "$work/old.db" | awk '{printf "database without the index: %.0f MB\n", $5 / 1e6}'
SWEEP_SERVE_BENCH_DB="$work/bench.db" SWEEP_SERVE_BENCH_OLD_DB="$work/old.db" \
  SWEEP_SERVE_BENCH_OLD_BIN="${BASELINE:-}" \
  nice -n 10 cargo test --release --test it serve::bench_ -- --ignored --nocapture 2>&1 |
  grep -v -E '^(running|test result|$)|^test serve::bench'
