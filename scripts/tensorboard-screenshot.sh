#!/usr/bin/env bash
# Remakes docs/images/tensorboard-hparams.png: a small real sweep (the built-in
# trainer: ResNet-18 from scratch on 32 px demo data, 4 trials of 5 epochs, on
# the CPU; a few minutes on 2 cores) run with `[sweep] tensorboard`, then
# TensorBoard from the test venv over its files, and headless Chromium's
# screenshot of the HParams tab, made small (a 64-colour palette).
# Usage: scripts/tensorboard-screenshot.sh [OUT.png]
# Needs: target/release/{sweep,sweep-worker} (cargo build --release --workspace
# --bins), chromium, the test venv with tensorboard (the export tests make it:
# cargo test --release --test it export::), and a Python with Pillow
# ($SWEEP_PYTHON, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/images/tensorboard-hparams.png}
venv=$(ls -d "${XDG_CACHE_HOME:-$HOME/.cache}"/sweep/export-venv-tensorboard* | tail -n 1)
python=${SWEEP_PYTHON:-python3}
work=$(mktemp -d)
tb_pid=
cleanup() {
  [ -n "$tb_pid" ] && kill "$tb_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

target/release/sweep data demo "$work/data" --per-class 40 --image-size 32 >/dev/null
cat >"$work/hparams.toml" <<EOF
[sweep]
name = "hparams"
dataset = "$work/data"
tensorboard = "$work/runs"

[defaults]
backbone = "resnet18"
epochs = 5
image_size = 32
batch_size = 32
optimizer = "adam"
head = "original"
log_every = 5

[grid]
lr = [0.003, 0.001]
weight_decay = [0.0, 0.0001]

[resources]
cpu_workers = 2
EOF
SWEEP_WORKER="$PWD/target/release/sweep-worker" \
  target/release/sweep --db "$work/results.db" run "$work/hparams.toml" --results "$work/results" --plain

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/python" -m tensorboard.main --logdir "$work/runs/hparams" --host 127.0.0.1 --port "$port" >"$work/tb.log" 2>&1 &
tb_pid=$!
for _ in $(seq 120); do
  curl -fs "http://127.0.0.1:$port/data/runs" >/dev/null && break
  kill -0 "$tb_pid" || { cat "$work/tb.log" >&2; exit 1; }
  sleep 0.5
done
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,640 \
  --virtual-time-budget=20000 --screenshot="$work/shot.png" "http://127.0.0.1:$port/#hparams" 2>/dev/null
"$python" - "$work/shot.png" "$out" <<'EOF'
import sys
from PIL import Image
Image.open(sys.argv[1]).convert("RGB").quantize(colors=64).save(sys.argv[2], optimize=True)
EOF
ls -l "$out"
