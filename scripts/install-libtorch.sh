#!/usr/bin/env bash
# Installs PyTorch 2.11.0 (which carries libtorch) from PyPI into a cache shared
# by every clone, once. Idempotent and safe to interrupt: it builds into a
# temporary directory and renames it into place only when complete.
#
# Prints the libtorch directory (the torch package dir) on stdout.
# Honour LIBTORCH when set: then nothing is installed.
set -euo pipefail

TORCH_VERSION="${SWEEP_TORCH_VERSION:-2.11.0}"
TORCHVISION_VERSION="${SWEEP_TORCHVISION_VERSION:-0.26.0}"

if [[ -n "${LIBTORCH:-}" ]]; then
  if [[ ! -d "$LIBTORCH/lib" ]]; then
    echo "error: LIBTORCH=$LIBTORCH has no lib/ directory; point it at a libtorch or torch package dir" >&2
    exit 2
  fi
  echo "$LIBTORCH"
  exit 0
fi

CACHE="${SWEEP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sweep}"
VENV="$CACHE/torch-$TORCH_VERSION"
PY="${PYTHON:-python3}"

find_torch_dir() {
  "$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))'
}

if [[ -f "$VENV/.complete" ]]; then
  find_torch_dir
  exit 0
fi

mkdir -p "$CACHE"
# One installer at a time (two clones building at once share the cache).
exec 9>"$CACHE/.install.lock"
flock 9
if [[ -f "$VENV/.complete" ]]; then
  find_torch_dir
  exit 0
fi

# A directory without .complete is an interrupted install: start it over.
rm -rf "$VENV"
echo "installing torch==$TORCH_VERSION into $VENV (one time, ~4.6 GB)..." >&2
"$PY" -m venv "$VENV" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" safetensors numpy pillow >&2
touch "$VENV/.complete"
find_torch_dir
