#!/usr/bin/env bash
# Every backbone, `sweep` (its `sweep-worker`) against the same model in
# PyTorch (bench/pytorch_train.py: torchvision's model, ImageFolder,
# DataLoader with num_workers=0, SGD with momentum, sweep's default MLP head
# in the same place), same data, image size, batch size and thread count, one
# after the other in one run; printed side by side: training images/s (the
# epochs' mean, data loading included on both sides), wall time, and the peak
# RSS of each (GNU time's maximum resident set size of the process tree:
# the worker for sweep, the Python process for PyTorch).
#
#   [BATCH=32] [PER_CLASS=100] bench/backbones.sh [IMAGE_SIZE] [EPOCHS] [BACKBONE...]
# defaults: 64 px, 2 epochs, every backbone of the issue, batch 32, 100
# training images per class (12 classes); a small machine finishes in about
# 15 minutes with BATCH=16 PER_CLASS=8. Needs `make build`
# first (and uses the PyTorch that make installs). On the CPU; a GPU machine
# runs the sweep side on the GPU (see bench/gpu.sh for a GPU comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE="${1:-64}"; EPOCHS="${2:-2}"; shift $(( $# > 2 ? 2 : $# )) || true
BACKBONES=("$@")
[ ${#BACKBONES[@]} -gt 0 ] || BACKBONES=(resnet50 convnext_tiny convnext_small efficientnet_b0 efficientnet_v2_s mobilenet_v3_large regnet_y_3_2gf vit_b_16 swin_t)
BATCH="${BATCH:-32}"
PER_CLASS="${PER_CLASS:-100}"
THREADS=$(nproc)
LIBTORCH="${LIBTORCH:-$(scripts/install-libtorch.sh)}"
PY="$(dirname "$(dirname "$(dirname "$(dirname "$LIBTORCH")")")")/bin/python"
BIN=target/release/sweep
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time; apt-get install time)" >&2; exit 2; }
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
"$BIN" data demo "$WORK/data" --per-class "$PER_CLASS" --image-size "$SIZE" 2>/dev/null
peak_gb() { awk -F': ' '/Maximum resident set size/ {printf "%.2f", $2 / 1048576}' "$1"; }
printf "%s, %s px, %s epochs, batch %s, %s train images, %s threads, %s\n" "$(date -u +%F)" "$SIZE" "$EPOCHS" "$BATCH" "$((12 * PER_CLASS))" "$THREADS" "$(uname -m)"
printf "%-20s %12s %12s %7s %11s %11s\n" backbone "sweep img/s" "torch img/s" ratio "sweep RSS" "torch RSS"
for B in "${BACKBONES[@]}"; do
  cat > "$WORK/$B.toml" <<TOML
[sweep]
name = "$B"
dataset = "$WORK/data"
[defaults]
backbone = "$B"
epochs = $EPOCHS
image_size = $SIZE
batch_size = $BATCH
log_every = 1000
TOML
  /usr/bin/time -v -o "$WORK/$B.sweep.time" "$BIN" --db "$WORK/$B.db" run "$WORK/$B.toml" --results "$WORK/results" --plain >/dev/null 2>&1
  S_IPS=$("$PY" - "$WORK/$B.db" <<'PYEOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT AVG(value) FROM metrics WHERE split='train_epoch' AND name='images_per_s'").fetchone()[0])
PYEOF
)
  OUT=$(/usr/bin/time -v -o "$WORK/$B.torch.time" "$PY" bench/pytorch_train.py "$WORK/data" "$B" "$SIZE" "$EPOCHS" "$BATCH" 0 "$THREADS")
  T_IPS=$(echo "$OUT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["train_images_per_s"])')
  printf "%-20s %12.1f %12.1f %6.2fx %8s GB %8s GB\n" "$B" "$S_IPS" "$T_IPS" "$(echo "$S_IPS / $T_IPS" | bc -l)" \
    "$(peak_gb "$WORK/$B.sweep.time")" "$(peak_gb "$WORK/$B.torch.time")"
done
