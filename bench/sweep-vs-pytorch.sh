#!/usr/bin/env bash
# A whole sweep against the same trials run by hand as PyTorch scripts, one
# after the other, in one run: the quickstart-sized sweep (resnet18/resnet34 ×
# 2 learning rates, batch 32) through `sweep run` with its default resources
# for this machine, then the same 4 trials as 4 `python bench/pytorch_train.py`
# processes started from scratch (import torch, ImageFolder + DataLoader
# decoding the PNGs, train, validate every epoch, test the best epoch at the
# end). Prints both wall times, the ratio, and where each side's time went.
#
#   bench/sweep-vs-pytorch.sh [PER_CLASS] [IMAGE_SIZE] [EPOCHS]
#
# Defaults: 50 training images a class (12 classes; valid and test 12 a
# class), 64 px, 2 epochs. Needs `make build` first (it uses the PyTorch that
# make installs). The decoded-image cache goes to a fresh scratch directory,
# so the sweep pays for decoding the dataset as a first sweep on new data
# does. SWEEP_BENCH_RESOURCES='cpu_workers = 1' adds a [resources] table to
# the sweep file (to measure one setting against the default);
# SWEEP_BENCH_KEEP=FILE keeps a copy of the sweep's results database.
set -euo pipefail
cd "$(dirname "$0")/.."
PER_CLASS="${1:-50}"; SIZE="${2:-64}"; EPOCHS="${3:-2}"; BATCH=32
BACKBONES=(resnet18 resnet34); LRS=(0.01 0.005)
THREADS=$(nproc)
BIN=target/release/sweep
if [[ ! -x "$BIN" || ! -x target/release/sweep-worker ]]; then
  echo "error: $BIN or target/release/sweep-worker is missing; run \`make build\` first" >&2
  exit 2
fi
LIBTORCH="${LIBTORCH:-$(scripts/install-libtorch.sh)}"
PY="$(dirname "$(dirname "$(dirname "$(dirname "$LIBTORCH")")")")/bin/python"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
export SWEEP_CACHE_DIR="$WORK/cache"
"$BIN" data demo "$WORK/data" --per-class "$PER_CLASS" --image-size "$SIZE" >/dev/null 2>&1
quote() { local IFS=,; echo "$*"; }
cat > "$WORK/s.toml" <<TOML
[sweep]
name = "bench"
dataset = "$WORK/data"
[defaults]
epochs = $EPOCHS
image_size = $SIZE
batch_size = $BATCH
[grid]
backbone = [$(printf '"%s",' "${BACKBONES[@]}" | sed 's/,$//')]
lr = [$(quote "${LRS[@]}")]
TOML
if [[ -n "${SWEEP_BENCH_RESOURCES:-}" ]]; then
  printf '[resources]\n%s\n' "$SWEEP_BENCH_RESOURCES" >> "$WORK/s.toml"
fi
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# --- sweep: one `sweep run`; the coordinator's CPU time is sampled from /proc
# (utime + stime, no fork per sample) to put a figure on its own work.
T0=$EPOCHREALTIME
"$BIN" --db "$WORK/r.db" run "$WORK/s.toml" --results "$WORK/results" --plain >"$WORK/run.out" 2>"$WORK/run.err" &
PID=$!
while [[ -r /proc/$PID/stat ]]; do
  read -r -a STAT < "/proc/$PID/stat" 2>/dev/null || break
  [[ "${STAT[2]}" == Z ]] && break
  echo "$EPOCHREALTIME $(( STAT[13] + STAT[14] ))" >> "$WORK/cpu.log"
  sleep 0.25
done
RC=0; wait "$PID" || RC=$?
T1=$EPOCHREALTIME
if [[ $RC -ne 0 ]]; then
  echo "error: sweep run exited $RC:" >&2; cat "$WORK/run.err" >&2; exit 1
fi
if [[ -n "${SWEEP_BENCH_KEEP:-}" ]]; then cp "$WORK/r.db" "$SWEEP_BENCH_KEEP"; fi

# The coordinator's start-up includes one `sweep-worker probe` (libtorch's
# version for the sweep's system_info): timed here on its own.
P0=$EPOCHREALTIME; target/release/sweep-worker probe >/dev/null; PROBE_S=$(echo "$EPOCHREALTIME - $P0" | bc)

# --- PyTorch: the same 4 trials, one process each, one after the other.
: > "$WORK/pt.jsonl"
PT0=$EPOCHREALTIME
for B in "${BACKBONES[@]}"; do
  for LR in "${LRS[@]}"; do
    L=$EPOCHREALTIME
    OUT=$("$PY" bench/pytorch_train.py "$WORK/data" "$B" "$SIZE" "$EPOCHS" "$BATCH" 0 "$THREADS" --lr "$LR" --test)
    echo "{\"backbone\": \"$B\", \"lr\": $LR, \"launched_at\": $L, \"exited_at\": $EPOCHREALTIME, \"run\": $OUT}" >> "$WORK/pt.jsonl"
  done
done
PT1=$EPOCHREALTIME
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" - "$WORK" "$T0" "$T1" "$PT0" "$PT1" "$(getconf CLK_TCK)" "$THREADS" "$LOAD_BEFORE" "$LOAD_AFTER" "$SIZE" "$EPOCHS" "$BATCH" "$PROBE_S" <<'PYEOF'
import json, re, sqlite3, sys
work, t0, t1, pt0, pt1, tck, threads, load0, load1, size, epochs, batch, probe_s = sys.argv[1:]
t0, t1, pt0, pt1, tck = float(t0), float(t1), float(pt0), float(pt1), float(tck)
db = sqlite3.connect(f"{work}/r.db")
q = lambda sql: db.execute(sql).fetchall()
created = q("SELECT created_at FROM sweeps")[0][0]
att = q("""SELECT t.backbone, t.lr, a.started_at, a.hello_at, a.finished_at, a.timings, a.device, s.accuracy
           FROM attempts a JOIN trials t ON t.id = a.trial_id LEFT JOIN test_results s ON s.trial_id = t.id
           WHERE a.error_class IS NULL ORDER BY a.started_at""")
status = q("SELECT status, COUNT(*) FROM trials GROUP BY status")
if status != [("done", 4)] or len(att) != 4:
    sys.exit(f"error: expected 4 done trials with one clean attempt each, got {status} and {len(att)} attempts")
counts = dict(q("SELECT split, SUM(count) FROM class_distribution GROUP BY split"))
err = open(f"{work}/run.err").read()
m = re.search(r"on (\d+) CPU worker\(s\), (\d+) threads each", err)
workers, wthreads = (int(m.group(1)), int(m.group(2))) if m else (None, None)
m = re.search(r"decoded (\d+) images .* in ([0-9.]+) s", err)
cache_s = float(m.group(2)) if m else None
first_start = att[0][2]
last_end = max(a[4] for a in att)
phases = ["data_s", "model_s", "train_s", "batch_wait_s", "valid_s", "checkpoint_s", "test_s"]
tot = dict.fromkeys(phases + ["start", "rest", "attempt"], 0.0)
for _, _, start, hello, end, timings, _, _ in att:
    t = json.loads(timings)
    for p in phases:
        tot[p] += t[p]
    tot["start"] += hello - start
    tot["attempt"] += end - start
    tot["rest"] += (end - hello) - sum(t[p] for p in phases)
slots_busy = (workers or 1) * (last_end - first_start)
samples = [tuple(map(float, l.split())) for l in open(f"{work}/cpu.log")]
def cpu_at(ts):
    before = [c for (s, c) in samples if s <= ts]
    return (before[-1] if before else samples[0][1]) / tck
coord_cpu_trials = cpu_at(t1) - cpu_at(first_start)
coord_cpu_all = samples[-1][1] / tck

pt = [json.loads(l) for l in open(f"{work}/pt.jsonl")]
ptot = dict.fromkeys(["import", "setup", "data", "train", "eval", "rest"], 0.0)
for r in pt:
    o = r["run"]
    ptot["import"] += o["imported_at"] - r["launched_at"]
    ptot["setup"] += o["setup_s"]
    ptot["data"] += o["data_s"]
    ptot["train"] += o["train_s"]
    ptot["eval"] += o["eval_s"]
    ptot["rest"] += (r["exited_at"] - r["launched_at"]) - (o["imported_at"] - r["launched_at"]) - o["setup_s"] - o["data_s"] - o["train_s"] - o["eval_s"]

sw, pw = t1 - t0, pt1 - pt0
row = lambda label, v, total=None: print(f"  {label:<68} {v:7.1f} s" + (f"  {100 * v / total:5.1f} %" if total else ""))
print(f"sweep against sequential PyTorch scripts: {' / '.join(sorted({a[0] for a in att}))} x lr {' / '.join(str(l) for l in sorted({a[1] for a in att}, reverse=True))}, "
      f"{size} px, {epochs} epochs, batch {batch}, {counts.get('train', 0)} train / {counts.get('valid', 0)} valid / {counts.get('test', 0)} test images, {threads} cores")
print(f"load average before {load0}, after {load1}")
print(f"{'':<40}{'wall s':>10}")
print(f"{'sweep run (4 trials)':<40}{sw:>10.1f}")
print(f"{'4 PyTorch scripts, one after another':<40}{pw:>10.1f}")
print(f"ratio PyTorch scripts / sweep: {pw / sw:.2f}x")
print("test accuracy (sweep | PyTorch script):")
for (b, lr, *_, acc) in sorted(att, key=lambda a: (a[0], -a[1])):
    o = next(r["run"] for r in pt if r["backbone"] == b and abs(r["lr"] - lr) < 1e-12)
    print(f"  {b} lr {lr:<8} {100 * acc:6.2f} % | {100 * o['test_accuracy']:6.2f} %")
print()
print(f"sweep, wall time ({workers} CPU worker(s) at once, {wthreads} torch thread(s) each):")
row(f"coordinator start-up: plan, worker probe ({float(probe_s):.1f} s alone), dataset hash", created - t0, sw)
row("decoded-image cache: built once, then first worker launched" + (f" (build {cache_s:.1f} s)" if cache_s else ""), first_start - created, sw)
row("trials running (first worker start to last worker exit)", last_end - first_start, sw)
row("shutdown: last database writes, WAL checkpoint, summary", t1 - last_end, sw)
print(f"sweep, inside the trials (worker-seconds summed over the 4 trials; {workers} slot(s) x {last_end - first_start:.1f} s = {slots_busy:.1f} slot-s):")
row("worker start: process spawn + libtorch load, until hello", tot["start"], slots_busy)
row("data: scan + map the decoded cache", tot["data_s"], slots_busy)
row("model and optimizer", tot["model_s"], slots_busy)
row("training compute (forward, backward, step)", tot["train_s"], slots_busy)
row("training waiting for the loader thread", tot["batch_wait_s"], slots_busy)
row("validation (every epoch)", tot["valid_s"], slots_busy)
row("checkpoints (train_state, last, best; fsync)", tot["checkpoint_s"], slots_busy)
row("test (best checkpoint)", tot["test_s"], slots_busy)
row("messages, exit, unaccounted", tot["rest"], slots_busy)
row("slots idle (no trial left for a free slot)", slots_busy - tot["attempt"], slots_busy)
row("coordinator CPU while trials ran (database, protocol)", coord_cpu_trials)
row("coordinator CPU in all (cache build included)", coord_cpu_all)
print("PyTorch scripts (summed over the 4 processes):")
row("interpreter start + import torch, torchvision", ptot["import"], pw)
row("setup: ImageFolder scans, model, optimizer", ptot["setup"], pw)
row("decode + transforms (DataLoader, in process)", ptot["data"], pw)
row("training compute (forward, backward, step)", ptot["train"], pw)
row("evaluation compute (valid every epoch, test at the end)", ptot["eval"], pw)
row("exit, unaccounted", ptot["rest"], pw)
PYEOF
