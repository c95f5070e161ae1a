#!/usr/bin/env bash
# Training throughput of `sweep` against the equivalent PyTorch script
# (torchvision ImageFolder + DataLoader + transforms) on the same data, model,
# batch size and thread count, in one run, printed side by side.
#
#   bench/cpu-vs-pytorch.sh [BACKBONE] [IMAGE_SIZE] [EPOCHS]
# Needs `make build` first (it uses the PyTorch that make installs).
set -euo pipefail
cd "$(dirname "$0")/.."
BACKBONE="${1:-resnet18}"; SIZE="${2:-64}"; EPOCHS="${3:-2}"; BATCH=32
THREADS=$(nproc)
LIBTORCH="${LIBTORCH:-$(scripts/install-libtorch.sh)}"
PY="$(dirname "$(dirname "$(dirname "$(dirname "$LIBTORCH")")")")/bin/python"
BIN=target/release/sweep
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
"$BIN" data demo "$WORK/data" --per-class 100 --image-size "$SIZE" 2>/dev/null
cat > "$WORK/s.toml" <<TOML
[sweep]
name = "bench"
dataset = "$WORK/data"
[defaults]
backbone = "$BACKBONE"
epochs = $EPOCHS
image_size = $SIZE
batch_size = $BATCH
log_every = 1000
TOML
t0=$(date +%s.%N)
"$BIN" --db "$WORK/r.db" run "$WORK/s.toml" --results "$WORK/results" --plain >/dev/null 2>&1
t1=$(date +%s.%N)
SWEEP_TRAIN_IPS=$("$PY" - "$WORK/r.db" <<'PYEOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT AVG(value) FROM metrics WHERE split='train_epoch' AND name='images_per_s'").fetchone()[0])
PYEOF
)
SWEEP_WALL=$(echo "$t1 - $t0" | bc)
for W in 0 1; do
  OUT=$("$PY" bench/pytorch_train.py "$WORK/data" "$BACKBONE" "$SIZE" "$EPOCHS" "$BATCH" "$W" "$THREADS")
  eval "PT_IPS_$W=$(echo "$OUT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["train_images_per_s"])')"
  eval "PT_WALL_$W=$(echo "$OUT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["wall_s"])')"
done
printf "%s %spx, %s epochs, batch %s, 1200 train images, %s threads\n" "$BACKBONE" "$SIZE" "$EPOCHS" "$BATCH" "$THREADS"
printf "%-34s %12s %10s\n" "" "train img/s" "wall s"
printf "%-34s %12.1f %10.1f\n" "sweep (worker process, end to end)" "$SWEEP_TRAIN_IPS" "$SWEEP_WALL"
printf "%-34s %12.1f %10.1f\n" "PyTorch script, num_workers=0" "$PT_IPS_0" "$PT_WALL_0"
printf "%-34s %12.1f %10.1f\n" "PyTorch script, num_workers=1" "$PT_IPS_1" "$PT_WALL_1"
printf "ratio sweep / PyTorch (train img/s): %.2fx (workers=0), %.2fx (workers=1)\n" \
  "$(echo "$SWEEP_TRAIN_IPS / $PT_IPS_0" | bc -l)" "$(echo "$SWEEP_TRAIN_IPS / $PT_IPS_1" | bc -l)"
