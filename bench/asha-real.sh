#!/usr/bin/env bash
# Real training on the demo data: the same 27-configuration sweep (backbone ×
# lr × weight_decay; resnet18/34/50 from scratch, 32 px, Adam, cosine
# schedule) without early stopping and with ASHA (reduction 3, rungs at
# epochs 1 and 3), one after the other on this machine. Prints wall time,
# epochs trained and the best test accuracy side by side, and the test accuracy
# of the configuration each run would pick (its best validation accuracy).
#   bench/asha-real.sh [EPOCHS] [CPU_WORKERS] [PER_CLASS]     (default 6 2 60)
# Besides wall time it prints the CPU seconds the sweep used (coordinator and
# workers): on a machine shared with other jobs, that is the fairer figure.
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-6}
workers=${2:-2}
per_class=${3:-60}
cargo build --release --quiet --workspace --bins
BIN=$PWD/target/release/sweep
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
"$BIN" data demo "$W/data" --per-class "$per_class" --image-size 32 >/dev/null
echo "27 configurations, $epochs epochs, $per_class training images a class (12 classes), $workers trials at once, $(nproc) cores"
printf '%-8s %10s %10s %12s %14s %16s\n' stopping "wall s" "CPU s" "epochs run" "best test acc" "picked test acc"
for mode in none asha; do
  cat > "$W/$mode.toml" <<TOML
[sweep]
name = "asha-real-$mode"
dataset = "$W/data"
[defaults]
epochs = $epochs
image_size = 32
batch_size = 32
optimizer = "adam"
schedule = "cosine"
augment = ["hflip"]
head = "original"
[grid]
backbone = ["resnet18", "resnet34", "resnet50"]
lr = [0.0005, 0.001, 0.002]
weight_decay = [0.0, 0.0001, 0.001]
[resources]
cpu_workers = $workers
[stopping]
method = "$mode"
min_epochs = 1
reduction = 3
TOML
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$W/$mode.time" "$BIN" --db "$W/r.db" run "$W/$mode.toml" --results "$W/results" --plain >/dev/null 2>"$W/$mode.log" || { tail -20 "$W/$mode.log"; exit 1; }
  end=$(date +%s.%N)
  row=$(sqlite3 "$W/r.db" "SELECT sum(t.epochs_done), max(r.accuracy),
      (SELECT r2.accuracy FROM trials t2 JOIN test_results r2 ON r2.trial_id = t2.id WHERE t2.sweep_id = s.id ORDER BY t2.best_val_accuracy DESC LIMIT 1)
    FROM sweeps s JOIN trials t ON t.sweep_id = s.id LEFT JOIN test_results r ON r.trial_id = t.id WHERE s.name = 'asha-real-$mode'")
  IFS='|' read -r ep best picked <<<"$row"
  read -r user sys <"$W/$mode.time"
  printf '%-8s %10.1f %10.1f %12s %13.1f%% %15.1f%%\n' "$mode" "$(echo "$end - $start" | bc)" "$(echo "$user + $sys" | bc)" "$ep" "$(echo "$best * 100" | bc -l)" "$(echo "$picked * 100" | bc -l)"
done
