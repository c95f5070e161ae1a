#!/usr/bin/env bash
# The input pipeline alone: `sweep bench data` (decode once into the shared
# cache, then crop/resize/flip batches from it, as a worker's loader does)
# against torchvision's ImageFolder + DataLoader (RandomResizedCrop + flip +
# ToTensor + Normalize) on the same photo-sized JPEGs, in one run, at the same
# thread count: sweep on 1 thread against num_workers=0 (one process), and on
# 2 threads against num_workers=2. Prints both and the ratios.
#
#   bench/data-vs-torchvision.sh [TRAIN_IMAGES] [IMAGE_SIZE] [BATCH] [EPOCHS] [ROUNDS]
#
# Each of the four runs is repeated ROUNDS times (default 3), interleaved
# (sweep, torchvision, sweep, ...), and the median of each is printed: on a
# shared machine one run can be 30 % off another of the same program.
# Needs `make build` first (and the PyTorch + torchvision that make installs).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"; SIZE="${2:-224}"; BATCH="${3:-64}"; EPOCHS="${4:-3}"; ROUNDS="${5:-3}"
LIBTORCH="${LIBTORCH:-$(scripts/install-libtorch.sh)}"
# torchvision comes with torch from scripts/install-libtorch.sh (torch 2.11.0 + torchvision 0.26.0).
PY="${SWEEP_PYTHON:-$(dirname "$(dirname "$(dirname "$(dirname "$LIBTORCH")")")")/bin/python}"
"$PY" -c 'import torchvision' 2>/dev/null || "$PY" -m pip install --quiet --disable-pip-version-check "torchvision==${SWEEP_TORCHVISION_VERSION:-0.26.0}" pillow numpy
BIN=target/release/sweep
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
export SWEEP_CACHE_DIR="$WORK/cache"
echo "generating $N train JPEGs (500x375 and 375x500) ..." >&2
"$PY" bench/make_jpegs.py "$WORK/data" "$N"
field() { "$PY" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
declare -A S1 SL T1 TL
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for pair in "1 0" "2 2"; do
  set -- $pair; THREADS=$1; W=$2
  s1=(); sl=(); t1=(); tl=()
  for ((r = 0; r < ROUNDS; r++)); do
    # A fresh cache each round: epoch 1 always pays for decoding.
    rm -rf "$SWEEP_CACHE_DIR"
    OUT=$("$BIN" bench data "$WORK/data" --image-size "$SIZE" --batch-size "$BATCH" --epochs "$EPOCHS" --threads "$THREADS" --json)
    s1+=("$(echo "$OUT" | field epoch1_img_s)"); sl+=("$(echo "$OUT" | field later_img_s)")
    OUT=$("$PY" bench/torchvision_data.py "$WORK/data/train" "$SIZE" "$BATCH" "$W" "$EPOCHS")
    t1+=("$(echo "$OUT" | field epoch1_img_s)"); tl+=("$(echo "$OUT" | field later_img_s)")
  done
  S1[$THREADS]=$(median "${s1[@]}"); SL[$THREADS]=$(median "${sl[@]}")
  T1[$W]=$(median "${t1[@]}"); TL[$W]=$(median "${tl[@]}")
done
printf "input pipeline: %s train JPEGs 500x375, RandomResizedCrop %s + flip, batch %s, %s epochs, %s cores, median of %s rounds\n" "$N" "$SIZE" "$BATCH" "$EPOCHS" "$(nproc)" "$ROUNDS"
printf "%-44s %14s %16s\n" "" "epoch 1 img/s" "later epochs img/s"
printf "%-44s %14.0f %16.0f\n" "sweep bench data, 1 thread" "${S1[1]}" "${SL[1]}"
printf "%-44s %14.0f %16.0f\n" "torchvision DataLoader, num_workers=0" "${T1[0]}" "${TL[0]}"
printf "%-44s %14.0f %16.0f\n" "sweep bench data, 2 threads" "${S1[2]}" "${SL[2]}"
printf "%-44s %14.0f %16.0f\n" "torchvision DataLoader, num_workers=2" "${T1[2]}" "${TL[2]}"
ratio() { "$PY" -c "print(f'{$1 / $2:.1f}x')"; }
printf "ratio sweep / torchvision, 1 thread vs num_workers=0: epoch 1 %s, later %s\n" "$(ratio "${S1[1]}" "${T1[0]}")" "$(ratio "${SL[1]}" "${TL[0]}")"
printf "ratio sweep / torchvision, 2 threads vs num_workers=2: epoch 1 %s, later %s\n" "$(ratio "${S1[2]}" "${T1[2]}")" "$(ratio "${SL[2]}" "${TL[2]}")"
