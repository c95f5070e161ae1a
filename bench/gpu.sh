#!/usr/bin/env bash
# ResNet-50 at 224 px, batch 64, amp + channels_last on one GPU: `sweep` (the
# real worker, the shared decoded-image cache) against the equivalent PyTorch
# script (bench/pytorch_gpu.py: torchvision DataLoader with pinned memory,
# GradScaler, channels_last, cudnn.benchmark) on the same photo-sized JPEGs, in
# one run. Prints train img/s of the last epoch (epoch 1 holds cuDNN's
# autotuning), the ratio, peak GPU memory (nvidia-smi, sampled) and the
# differences that remain between the two.
#
#   bench/gpu.sh --prepare DIR              here, after `make build`: stripped copies
#                                           of target/release/{sweep,sweep-worker} in
#                                           DIR/bin, sizes checked, the sweep file
#                                           validated; no GPU needed
#   bench/gpu.sh --work DIR [N] [EPOCHS]    on the GPU machine, with DIR's binaries
#   bench/gpu.sh [N] [EPOCHS]               on a GPU machine with its own build
#
# The JPEGs (N = 6400 train images, ~43 KB each, ~280 MB) are written on the GPU
# machine by every core at once (~10-15 s on 16 cores): they cannot be carried
# (64 MiB), and a set small enough to carry would make an epoch too short to time.
#
# The device call (one, ~2-4 min; gpu-prep/ is git-ignored):
#   here:  make build && bench/gpu.sh --prepare gpu-prep
#   run:   carry: ["gpu-prep"]   timeout_s: 560
#          command: set -o pipefail; bash bench/gpu.sh --work gpu-prep 2>&1 | tee $OUT/gpu.txt
# Results come back under $OUT: gpu.txt (everything), results.txt (the table),
# sweep-run.log, worker.log, pytorch.log, mem-sweep.csv, mem-pytorch.csv.
#
# Environment: SWEEP_PYTHON (default python3: needs torch, numpy, PIL; torchvision
# for the PyTorch side, which is skipped with a message without it), LIBTORCH
# (default: that python's torch package dir), T_SWEEP / T_PYTORCH (time limits of
# each side, s; default 240 / 180), TMPDIR (data, cache, checkpoints: ~2.5 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
log() { printf '[gpu.sh %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'gpu.sh: error: %s\n' "$@" >&2; exit 2; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

MODE=full DIR=""
case "${1:-}" in
  --prepare) MODE=prepare; DIR="${2:?--prepare needs a directory}"; shift 2 ;;
  --work) MODE=work; DIR="${2:?--work needs a directory}"; shift 2 ;;
  -h | --help) sed -n '2,31p' "$0"; exit 0 ;;
esac
N="${1:-6400}"; EPOCHS="${2:-2}"; SIZE=224; BATCH=64; CLASSES=10
PY="${SWEEP_PYTHON:-python3}"
CARRY_LIMIT=$((64 * 1024 * 1024))

write_toml() { # FILE DATASET
  cat > "$1" <<TOML
[sweep]
name = "gpu-bench"
dataset = "$2"
[defaults]
backbone = "resnet50"
epochs = $EPOCHS
image_size = $SIZE
batch_size = $BATCH
amp = true
channels_last = true
log_every = 50
TOML
}

# ---------------------------------------------------------------- prepare (here)
if [[ "$MODE" == prepare ]]; then
  for b in sweep sweep-worker; do
    [[ -x "target/release/$b" ]] || die "target/release/$b is missing: run \`make build\` first"
  done
  mkdir -p "$DIR/bin"
  for b in sweep sweep-worker; do
    objcopy --strip-debug "target/release/$b" "$DIR/bin/$b" 2>/dev/null || strip --strip-debug -o "$DIR/bin/$b" "target/release/$b" \
      || die "neither objcopy nor strip could strip target/release/$b (install binutils)"
    chmod +x "$DIR/bin/$b"
  done
  {
    echo "prepared $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+dirty')"
    for b in sweep sweep-worker; do echo "$b: target/release/$b of $(date -u -r "target/release/$b" +%FT%TZ), $(stat -c %s "target/release/$b") bytes, stripped to $(stat -c %s "$DIR/bin/$b")"; done
  } > "$DIR/PREPARED"
  cat "$DIR/PREPARED"
  # Everything that travels: the working tree (tracked + untracked, not ignored) and DIR.
  tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  dir=$(du -sb "$DIR" | cut -f1)
  awk -v t="$tree" -v d="$dir" -v l="$CARRY_LIMIT" 'BEGIN { printf "carry: %s %.1f MiB + working tree %.1f MiB = %.1f MiB of %.0f MiB\n", ARGV[1], d/2^20, t/2^20, (t+d)/2^20, l/2^20 }' "$DIR"
  (( tree + dir <= CARRY_LIMIT )) || die "$DIR and the working tree exceed the 64 MiB the device call carries"
  # Validate the sweep file on a tiny stand-in dataset (the real one is made on the GPU machine).
  chk="$(mktemp -d)"; trap 'rm -rf "$chk"' EXIT
  "$DIR/bin/sweep" data demo "$chk/data" --per-class 2 --image-size 64 > /dev/null 2>&1
  write_toml "$chk/gpu.toml" "$chk/data"
  "$DIR/bin/sweep" run "$chk/gpu.toml" --dry-run
  "$PY" -m py_compile bench/pytorch_gpu.py bench/make_jpegs.py
  echo "prepared in $DIR (the sweep file validates; the PyTorch script compiles)."
  if [[ "$(realpath "$DIR")" != "$(pwd)"/* ]]; then
    echo "note: $DIR is outside the repository: the device call carries only paths inside it (use gpu-prep)"
  elif ! git check-ignore -q "$DIR"; then
    echo "warning: $DIR is not git-ignored: it would travel (and could be committed) as untracked files; use gpu-prep" >&2
  else
    echo "device call: carry [\"$DIR\"], command: set -o pipefail; bash bench/gpu.sh --work $DIR 2>&1 | tee \$OUT/gpu.txt"
  fi
  exit 0
fi

# ---------------------------------------------------------------- preflight (GPU machine)
if [[ "$MODE" == work ]]; then SRC_BIN="$DIR/bin"; else SRC_BIN=target/release; fi
log "preflight: python $PY, binaries from $SRC_BIN"
problems=()
command -v "$PY" > /dev/null || die "python '$PY' not found (set SWEEP_PYTHON)"
# Prints the modules it cannot import (space-separated) on one line, why on stderr.
MISSING=$("$PY" - <<'PYEOF'
import importlib
missing = []
import sys
for m in ("torch", "torchvision", "numpy", "PIL"):
    try:
        importlib.import_module(m)
    except Exception as e:
        missing.append(m)
        print(f"  import {m}: {type(e).__name__}: {e}", file=sys.stderr)
print(" ".join(missing))
PYEOF
) || MISSING="python-failed"
if [[ -n "$MISSING" ]]; then log "python $PY cannot import: $MISSING"; fi
has() { [[ " $MISSING " != *" $1 "* ]]; }
PT_SKIP=""
has torch || PT_SKIP="torch is not importable by $PY"
has torchvision || PT_SKIP="${PT_SKIP:+$PT_SKIP; }torchvision is not importable by $PY"
if ! has numpy || ! has PIL; then
  problems+=("$PY cannot import numpy and PIL, which write the JPEGs (bench/make_jpegs.py); missing: $MISSING")
fi
if [[ -z "${LIBTORCH:-}" ]]; then
  if has torch; then
    LIBTORCH=$("$PY" -c 'import torch,os;print(os.path.dirname(torch.__file__))')
  else
    problems+=("LIBTORCH is unset and $PY cannot import torch to find it")
  fi
fi
if [[ -n "${LIBTORCH:-}" ]]; then
  [[ -f "$LIBTORCH/lib/libtorch_cpu.so" ]] || problems+=("LIBTORCH=$LIBTORCH has no lib/libtorch_cpu.so")
  export LD_LIBRARY_PATH="$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
WORK="$(mktemp -d)"
MONITORS=()
cleanup() { for m in "${MONITORS[@]}"; do kill "$m" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/bin"
for b in sweep sweep-worker; do
  if [[ -f "$SRC_BIN/$b" ]]; then cp "$SRC_BIN/$b" "$WORK/bin/$b"; chmod +x "$WORK/bin/$b"
  else problems+=("$SRC_BIN/$b is missing (here: bench/gpu.sh --prepare $DIR, or make build)"); fi
done
BIN="$WORK/bin/sweep"
export SWEEP_WORKER="$WORK/bin/sweep-worker" SWEEP_CACHE_DIR="$WORK/cache"
# The GPU: without one the launcher gives no GPU slots and ResNet-50 would train on the CPU for hours.
if ! command -v nvidia-smi > /dev/null; then
  problems+=("no GPU: nvidia-smi is not on PATH (the launcher would run ResNet-50 on the CPU for hours)")
elif ! SMI=$(nvidia-smi -L 2>&1) || [[ "$SMI" != *GPU* ]]; then
  problems+=("no GPU: \`nvidia-smi -L\` failed or listed none: ${SMI//$'\n'/ }")
else
  log "nvidia-smi -L: $SMI"
fi
if has torch; then
  "$PY" -c 'import sys,torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
    || problems+=("no GPU: torch.cuda.is_available() is False in $PY")
fi
if [[ -x "$SWEEP_WORKER" && -n "${LIBTORCH:-}" ]]; then
  if PROBE=$("$SWEEP_WORKER" probe 2>&1); then
    log "sweep-worker probe: $PROBE"
    DEVS=$(echo "$PROBE" | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["cuda_devices"])' 2>/dev/null || echo 0)
    [[ "$DEVS" -ge 1 ]] || problems+=("no GPU: the carried sweep-worker sees no CUDA device (probe: $PROBE)")
  else
    problems+=("the carried sweep-worker does not start with LD_LIBRARY_PATH=$LD_LIBRARY_PATH: ${PROBE//$'\n'/ }")
  fi
fi
if (( ${#problems[@]} )); then
  printf 'gpu.sh: preflight failed, nothing was run:\n' >&2
  printf '  - %s\n' "${problems[@]}" >&2
  exit 2
fi
[[ -z "$PT_SKIP" ]] || log "the PyTorch side will be SKIPPED: $PT_SKIP"

# Loader parallelism as the worker sets it (worker/src/trainer.rs `threads`): one
# trial on one GPU gets every core (dispatcher: cores / slots); on CUDA a quarter
# (at least 1) are torch threads and the rest loader threads. PyTorch's DataLoader
# gets as many worker processes as sweep has loader threads.
CORES=$(nproc)
TORCH_THREADS=$(( CORES / 4 > 1 ? CORES / 4 : 1 ))
LOADERS=$(( CORES - TORCH_THREADS > 1 ? CORES - TORCH_THREADS : 1 ))

# ---------------------------------------------------------------- data + sweep
log "writing $N train JPEGs (500x375, $CLASSES classes) with $CORES processes ..."
"$PY" bench/make_jpegs.py "$WORK/data" "$N" "$CLASSES" "$CORES"
log "data: $(du -sh "$WORK/data" | cut -f1)"
write_toml "$WORK/gpu.toml" "$WORK/data"
"$BIN" doctor || log "sweep doctor reported problems (continuing)"
peak_of() { sort -n "$1" 2>/dev/null | tail -1; }
monitor() { while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 >> "$1"; sleep 0.2; done; }
SWEEP_OK=1 SWEEP_IPS="" PT_IPS="" PT_ALLOC="?" PT_WALL="" SWEEP_WALL=""
log "sweep run: cache build + $EPOCHS epochs of ResNet-50 (limit ${T_SWEEP:-240} s; progress in sweep-run.log) ..."
monitor "$WORK/mem-sweep.csv" & MONITORS+=($!)
t0=$(date +%s.%N)
timeout -k 20 "${T_SWEEP:-240}" "$BIN" --db "$WORK/r.db" run "$WORK/gpu.toml" --results "$WORK/results" --plain > /dev/null 2> "$WORK/run.log" || SWEEP_OK=0
t1=$(date +%s.%N); SWEEP_WALL=$(secs "$t0" "$t1")
kill "${MONITORS[-1]}" 2>/dev/null || true
if (( SWEEP_OK )); then
  SWEEP_IPS=$("$PY" - "$WORK/r.db" "$EPOCHS" <<'PYEOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT value FROM metrics WHERE split='train_epoch' AND name='images_per_s' AND epoch=?", (int(sys.argv[2]),)).fetchone()[0])
PYEOF
  ) || SWEEP_OK=0
fi
if (( SWEEP_OK )); then log "sweep: $(printf %.0f "$SWEEP_IPS") img/s in epoch $EPOCHS, $SWEEP_WALL s wall"
else log "sweep run FAILED or timed out after $SWEEP_WALL s; its log:"; tail -40 "$WORK/run.log" >&2; fi

# ---------------------------------------------------------------- PyTorch
if [[ -z "$PT_SKIP" ]]; then
  log "PyTorch script: $EPOCHS epochs, num_workers=$LOADERS (limit ${T_PYTORCH:-180} s) ..."
  monitor "$WORK/mem-pt.csv" & MONITORS+=($!)
  t2=$(date +%s.%N)
  if PT=$(timeout -k 20 "${T_PYTORCH:-180}" "$PY" bench/pytorch_gpu.py "$WORK/data" "$SIZE" "$EPOCHS" "$BATCH" "$LOADERS" 2> "$WORK/pytorch.log"); then
    PT_IPS=$(echo "$PT" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["epochs_img_s"][-1])')
    PT_ALLOC=$(echo "$PT" | "$PY" -c 'import json,sys; print(round(json.load(sys.stdin)["peak_allocated_mib"]))')
  else
    PT_SKIP="bench/pytorch_gpu.py failed or timed out (pytorch.log)"; tail -40 "$WORK/pytorch.log" >&2
  fi
  t3=$(date +%s.%N); PT_WALL=$(secs "$t2" "$t3")
  kill "${MONITORS[-1]}" 2>/dev/null || true
  if [[ -n "$PT_IPS" ]]; then log "PyTorch: $(printf %.0f "$PT_IPS") img/s in epoch $EPOCHS, $PT_WALL s wall"
  else log "PyTorch script FAILED or timed out after $PT_WALL s"; fi
fi

# ---------------------------------------------------------------- results
{
  printf "resnet50 %spx, batch %s, amp + channels_last, %s train JPEGs, epoch %s of %s, %s cores, %s\n" \
    "$SIZE" "$BATCH" "$N" "$EPOCHS" "$EPOCHS" "$CORES" "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  grep -h "decoded .* images" "$WORK/run.log" || true
  printf "%-50s %12s %22s %8s\n" "" "train img/s" "peak GPU MiB" "wall s"
  if (( SWEEP_OK )); then
    printf "%-50s %12.0f %22s %8s\n" "sweep ($LOADERS loader + $TORCH_THREADS torch threads)" "$SWEEP_IPS" "$(peak_of "$WORK/mem-sweep.csv")" "$SWEEP_WALL"
  else
    printf "%-50s %12s %22s %8s\n" "sweep" "FAILED" "-" "$SWEEP_WALL"
  fi
  if [[ -n "$PT_IPS" ]]; then
    printf "%-50s %12.0f %22s %8s\n" "PyTorch script, num_workers=$LOADERS, pin_memory" "$PT_IPS" "$(peak_of "$WORK/mem-pt.csv") (alloc $PT_ALLOC)" "$PT_WALL"
  else
    echo "PyTorch side SKIPPED: $PT_SKIP"
  fi
  if (( SWEEP_OK )) && [[ -n "$PT_IPS" ]]; then
    awk -v s="$SWEEP_IPS" -v p="$PT_IPS" 'BEGIN { printf "ratio sweep / PyTorch (train img/s): %.2fx\n", s / p }'
  fi
  cat <<EOF
Differences that remain:
- sweep decodes each JPEG once, before training (the "decoded" line, in its wall
  time, not in img/s), into a cache resized to 256 px short side, and crops from
  it every epoch; PyTorch decodes the full 500x375 JPEG (PIL) every epoch.
- sweep: $LOADERS loader threads in the worker process build u8 batches, pixels
  become floats and are normalised on the GPU; PyTorch: $LOADERS DataLoader
  processes do ToTensor + Normalize on the CPU and send float batches.
- sweep's wall time also holds the cache build, each epoch's validation and test
  passes and checkpoints; PyTorch's holds its imports and nothing else.
- peak GPU MiB is nvidia-smi's, sampled every 0.2 s (allocator reserve included).
EOF
} | tee "$WORK/results.txt"
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  cp "$WORK/results.txt" "$OUT/results.txt"
  cp "$WORK/run.log" "$OUT/sweep-run.log" 2>/dev/null || true
  find "$WORK/results" -name 'attempt-*.log' -exec cat {} + > "$OUT/worker.log" 2>/dev/null || true
  cp "$WORK/pytorch.log" "$OUT/pytorch.log" 2>/dev/null || true
  cp "$WORK/mem-sweep.csv" "$OUT/mem-sweep.csv" 2>/dev/null || true
  cp "$WORK/mem-pt.csv" "$OUT/mem-pytorch.csv" 2>/dev/null || true
  log "results and logs in $OUT"
fi
log "done"
(( SWEEP_OK )) || exit 1
