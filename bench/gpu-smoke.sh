#!/usr/bin/env bash
# GPU smoke benchmark (one call, < 5 minutes on one modern GPU): ResNet-50 at
# 224 px for 200 steps, with and without mixed precision, through the real
# worker. Prints images/s and peak GPU memory side by side.
#
#   bench/gpu-smoke.sh [SWEEP_BINARY]     (LD_LIBRARY_PATH may point at another PyTorch 2.11.0)
set -euo pipefail
BIN="${1:-target/release/sweep}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$BIN" doctor
# 200 steps of batch 32 = 6400 images: 534 a class over 12 classes.
"$BIN" data demo "$WORK/data" --per-class 534 --image-size 256 >/dev/null
run() {
  local amp="$1"
  cat > "$WORK/s-$amp.toml" <<TOML
[sweep]
name = "gpu-smoke-$amp"
dataset = "$WORK/data"
[defaults]
backbone = "resnet50"
epochs = 1
image_size = 224
batch_size = 32
max_batches = 200
log_every = 50
amp = $amp
TOML
  local log="$WORK/mem-$amp.csv"
  ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 >> "$log"; sleep 0.5; done ) &
  local mon=$!
  local t0=$(date +%s.%N)
  "$BIN" --db "$WORK/r.db" run "$WORK/s-$amp.toml" --results "$WORK/results" --plain > /dev/null 2> "$WORK/run-$amp.log" || { cat "$WORK/run-$amp.log"; kill $mon; exit 1; }
  local t1=$(date +%s.%N)
  kill $mon 2>/dev/null || true
  local ips=$("$BIN" --db "$WORK/r.db" report --sweep "gpu-smoke-$amp" --format json | python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["rows"][0]["images_per_s"])')
  local peak=$(sort -n "$log" 2>/dev/null | tail -1)
  printf "%-6s %10s img/s  peak %6s MiB  wall %5.1f s\n" "amp=$amp" "$ips" "${peak:-?}" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
}
echo "resnet50 224px batch 32, 200 steps (img/s over the whole run, warm-up included)"
run false
run true
