#!/usr/bin/env bash
# Installs the system fonts that tests/unicode_plots.rs draws class names with:
#   fonts-noto-cjk          Noto Sans CJK (Chinese, Japanese, Korean)
#   fonts-noto-color-emoji  Noto Color Emoji (colour bitmaps)
#   fontconfig              fc-list, which the test uses to check the SVG's font names
# Arabic needs no package: the DejaVu Sans embedded in `sweep` covers it (and the
# system's DejaVu Sans, fonts-dejavu-core, names it in SVG output).
#
# Idempotent and quiet: does nothing when every package is already installed.
# Debian/Ubuntu only; needs root (or passwordless sudo) when something is missing.
set -euo pipefail

PACKAGES=(fonts-noto-cjk fonts-noto-color-emoji fonts-dejavu-core fontconfig)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: fonts missing (${missing[*]}) and no apt-get here; install them with your package manager" >&2
  exit 1
fi
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "error: fonts missing (${missing[*]}); run this script as root" >&2
    exit 1
  fi
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "error: could not install ${missing[*]}" >&2
  exit 1
fi
# Refresh fontconfig's cache so fc-list sees the new fonts at once.
fc-cache -f >/dev/null 2>&1 || true
echo "installed test fonts: ${missing[*]}"
