#!/usr/bin/env bash
# ResNet-50 at 224 px, batch 64, amp + channels_last on one GPU: `sweep` (the
# real worker, the shared decoded-image cache) against the equivalent PyTorch
# script (bench/pytorch_gpu.py: torchvision DataLoader with pinned memory,
# GradScaler, channels_last, cudnn.benchmark) on the same photo-sized JPEGs, in
# one run. Prints train img/s of the last epoch (epoch 1 holds decoding and
# cuDNN's autotuning), the ratio, and peak GPU memory (nvidia-smi, sampled).
#
#   bench/gpu.sh [TRAIN_IMAGES] [EPOCHS]       one call on a GPU machine (~5 min)
#   bench/gpu.sh --prepare DIR [TRAIN_IMAGES]  the CPU side only: data, sweep
#                                              file, validation; no GPU needed
# Needs `make build` first (and the PyTorch + torchvision that make installs).
set -euo pipefail
cd "$(dirname "$0")/.."
PREPARE=""
if [[ "${1:-}" == "--prepare" ]]; then PREPARE="$2"; shift 2; fi
N="${1:-6400}"; EPOCHS="${2:-2}"; SIZE=224; BATCH=64
LIBTORCH="${LIBTORCH:-$(scripts/install-libtorch.sh)}"
PY="${SWEEP_PYTHON:-$(dirname "$(dirname "$(dirname "$(dirname "$LIBTORCH")")")")/bin/python}"
BIN=target/release/sweep
if [[ -n "$PREPARE" ]]; then WORK="$PREPARE"; mkdir -p "$WORK"; else WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT; fi
export SWEEP_CACHE_DIR="$WORK/cache"
echo "generating $N train JPEGs (500x375) ..." >&2
[[ -d "$WORK/data/train" ]] || "$PY" bench/make_jpegs.py "$WORK/data" "$N" 10
cat > "$WORK/gpu.toml" <<TOML
[sweep]
name = "gpu-bench"
dataset = "$WORK/data"
[defaults]
backbone = "resnet50"
epochs = $EPOCHS
image_size = $SIZE
batch_size = $BATCH
amp = true
channels_last = true
log_every = 50
TOML
"$BIN" run "$WORK/gpu.toml" --dry-run
"$PY" -m py_compile bench/pytorch_gpu.py
if [[ -n "$PREPARE" ]]; then
  echo "prepared in $WORK (the sweep file validates; bench/pytorch_gpu.py compiles)"
  exit 0
fi
"$BIN" doctor
peak_of() { sort -n "$1" 2>/dev/null | tail -1; }
monitor() { while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 >> "$1"; sleep 0.2; done; }
monitor "$WORK/mem-sweep.csv" & MON=$!
t0=$(date +%s.%N)
"$BIN" --db "$WORK/r.db" run "$WORK/gpu.toml" --results "$WORK/results" --plain > /dev/null 2> "$WORK/run.log" || { cat "$WORK/run.log"; kill $MON; exit 1; }
t1=$(date +%s.%N)
kill $MON 2>/dev/null || true
SWEEP_IPS=$("$PY" - "$WORK/r.db" "$EPOCHS" <<'PYEOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT value FROM metrics WHERE split='train_epoch' AND name='images_per_s' AND epoch=?", (int(sys.argv[2]),)).fetchone()[0])
PYEOF
)
WORKERS=$(( $(nproc) > 8 ? 8 : $(nproc) ))
monitor "$WORK/mem-pt.csv" & MON=$!
t2=$(date +%s.%N)
PT=$("$PY" bench/pytorch_gpu.py "$WORK/data" "$SIZE" "$EPOCHS" "$BATCH" "$WORKERS")
t3=$(date +%s.%N)
kill $MON 2>/dev/null || true
PT_IPS=$(echo "$PT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["epochs_img_s"][-1])')
PT_ALLOC=$(echo "$PT" | "$PY" -c 'import json,sys; print(round(json.load(sys.stdin)["peak_allocated_mib"]))')
printf "resnet50 %spx, batch %s, amp + channels_last, %s train JPEGs, epoch %s of %s, %s cores\n" "$SIZE" "$BATCH" "$N" "$EPOCHS" "$EPOCHS" "$(nproc)"
grep -h "decoded .* images" "$WORK/run.log" || true
printf "%-46s %12s %16s %8s\n" "" "train img/s" "peak GPU MiB" "wall s"
printf "%-46s %12.0f %16s %8.1f\n" "sweep (worker, shared cache)" "$SWEEP_IPS" "$(peak_of "$WORK/mem-sweep.csv")" "$(echo "$t1 - $t0" | bc)"
printf "%-46s %12.0f %16s %8.1f\n" "PyTorch script, num_workers=$WORKERS, pin_memory" "$PT_IPS" "$(peak_of "$WORK/mem-pt.csv") (alloc $PT_ALLOC)" "$(echo "$t3 - $t2" | bc)"
printf "ratio sweep / PyTorch (train img/s): %s\n" "$("$PY" -c "print(f'{$SWEEP_IPS / $PT_IPS:.2f}x')")"
