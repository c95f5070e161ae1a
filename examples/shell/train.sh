#!/bin/sh
# A "training program" in plain POSIX shell (and awk): proof that `sweep`'s
# [program] protocol needs no Python and no library. Its validation accuracy
# follows a known curve: the best learning rate is 0.01, and every learning
# rate approaches its own ceiling at the same pace,
#   val_acc(epoch) = ceiling(lr) * (1 - 0.6^epoch),
#   ceiling(lr)    = 0.9 - 0.1 * |log10(lr) + 2|.
#
#   sh train.sh --lr 0.01 --epochs 9 [--out DIR] [--sleep SECONDS]
#
# It prints one JSON record per epoch on stdout, logs to stderr, stops
# cleanly on SIGTERM (a stopped trial), and resumes from DIR/epoch when a
# previous attempt was interrupted (SWEEP_TRIAL_DIR is the same folder on
# every attempt). With SWEEP_PAUSE_AFTER set (promotion-based stopping) it
# ends after that epoch, its checkpoint kept: the sweep resumes it if it is
# promoted (`resumable = true` in [program] says it can).
set -eu
lr=0.01 epochs=5 out=${SWEEP_TRIAL_DIR:-.} pause=${TRAIN_SLEEP:-0.1}
while [ $# -gt 0 ]; do
  case $1 in
    --lr) lr=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --sleep) pause=$2; shift 2 ;;
    *) echo "train.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
epoch=0
if [ -f "$out/epoch" ]; then
  epoch=$(cat "$out/epoch")
  echo "resuming after epoch $epoch" >&2
fi
trap 'echo "SIGTERM: stopping after epoch $epoch" >&2; exit 0' TERM
echo "training with lr=$lr for $epochs epochs"
last=$epochs
if [ -n "${SWEEP_PAUSE_AFTER:-}" ] && [ "$SWEEP_PAUSE_AFTER" -lt "$epochs" ]; then
  last=$SWEEP_PAUSE_AFTER
fi
while [ "$epoch" -lt "$last" ]; do
  sleep "$pause"
  epoch=$((epoch + 1))
  awk -v lr="$lr" -v e="$epoch" 'BEGIN {
    d = log(lr) / log(10) + 2; if (d < 0) d = -d
    acc = (0.9 - 0.1 * d) * (1 - 0.6 ^ e)
    printf "{\"epoch\": %d, \"val_acc\": %.6f, \"val_loss\": %.6f}\n", e, acc, 1 - acc
  }'
  echo "$epoch" > "$out/epoch.tmp" && mv "$out/epoch.tmp" "$out/epoch"
done
if [ "$last" -lt "$epochs" ]; then
  echo "paused after epoch $epoch" >&2
  exit 0
fi
awk -v lr="$lr" -v e="$epoch" 'BEGIN {
  d = log(lr) / log(10) + 2; if (d < 0) d = -d
  printf "{\"epoch\": %d, \"test_acc\": %.6f}\n", e, (0.88 - 0.1 * d) * (1 - 0.6 ^ e)
}'
