#!/usr/bin/env bash
# N stand-in trials (tests/fake_worker.py, no training) through a real Slurm,
# and the same N through the local launcher, side by side in one run: the
# coordinator's own CPU per trial, srun's CPU on the submit host, the
# submission rate, the cost of one squeue / scontrol call, the database's
# size and write rate; plus bare `srun true` jobs as the cluster's own ceiling.
#   bench/slurm-scale.sh [TRIALS] [IN_FLIGHT]        (default: 1000 16)
# Needs a running Slurm (sudo make slurm-start) and `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
J=${2:-16}
SWEEP=$PWD/target/release/sweep
command -v srun >/dev/null && sinfo -h >/dev/null 2>&1 || { echo "needs a running Slurm: sudo make slurm-start" >&2; exit 2; }
[ -x "$SWEEP" ] || { echo "needs $SWEEP: make build" >&2; exit 2; }
W=$(mktemp -d /tmp/sweep-slurm-bench.XXXX)
trap 'rm -rf "$W"' EXIT
"$SWEEP" data demo "$W/data" --per-class 1 --image-size 8 >/dev/null 2>&1
SEEDS=$(seq -s, 1 "$N")
for L in local slurm; do
  {
    printf '[sweep]\nname = "scale-%s"\ndataset = "%s"\nseeds = [%s]\n\n' "$L" "$W/data" "$SEEDS"
    printf '[defaults]\nepochs = 1\n\n'
    if [ "$L" = slurm ]; then
      printf '[resources]\nlauncher = "slurm"\nretries = 0\n\n[slurm]\nmax_jobs = %d\n' "$J"
    else
      printf '[resources]\ncpu_workers = %d\nretries = 0\n' "$J"
    fi
  } > "$W/$L.toml"
done

# The write path's ceiling: 8 trials that each stream STEPS train_step lines as
# fast as Python prints them (4 metric rows a line), local and through srun.
STEPS=${SWEEP_BENCH_STEPS:-5000}
for L in local slurm; do
  {
    printf '[sweep]\nname = "firehose-%s"\ndataset = "%s"\nseeds = [1, 2, 3, 4, 5, 6, 7, 8]\n\n' "$L" "$W/data"
    printf '[defaults]\nepochs = 1\n\n'
    if [ "$L" = slurm ]; then printf '[resources]\nlauncher = "slurm"\n\n[slurm]\nmax_jobs = 8\n'; else printf '[resources]\ncpu_workers = 8\n'; fi
  } > "$W/firehose-$L.toml"
done

export SWEEP_WORKER_CMD=$PWD/tests/fake_worker.py FAKE_MODE=ok FAKE_STEPS=1 SWEEP_FAKE_GPUS=0
python3 - "$SWEEP" "$W" "$N" "$J" "$STEPS" <<'PY'
import os, sqlite3, subprocess, sys, time
sweep, w, n, j = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tick = os.sysconf("SC_CLK_TCK")

def self_cpu(pid):
    """utime+stime of the process itself (not its children), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

def run(launcher):
    db = f"{w}/{launcher}.db"
    t0 = time.monotonic()
    p = subprocess.Popen([sweep, "--db", db, "run", f"{w}/{launcher}.toml", "--results", f"{w}/results-{launcher}", "--plain"],
                         stdout=subprocess.DEVNULL, stderr=open(f"{w}/{launcher}.log", "w"), cwd=w)
    cpu = 0.0
    while p.poll() is None:
        try:
            cpu = self_cpu(p.pid)
        except (OSError, IndexError):
            pass
        time.sleep(0.05)
    wall = time.monotonic() - t0
    # Children of the coordinator (local: the workers; slurm: srun) as the kernel counted them.
    return wall, cpu, p.returncode, db

def children_cpu():
    r = os.times()
    return r.children_user + r.children_system

rows = {}
for launcher in ("local", "slurm"):
    before = children_cpu()
    wall, cpu, rc, db = run(launcher)
    total_children = children_cpu() - before  # coordinator + everything it waited for
    con = sqlite3.connect(db)
    done = con.execute("SELECT COUNT(*) FROM trials WHERE status = 'done'").fetchone()[0]
    starts = [r[0] for r in con.execute("SELECT started_at FROM attempts ORDER BY started_at")]
    metrics = con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    con.close()
    size = os.path.getsize(db)
    span = (starts[-1] - starts[0]) if len(starts) > 1 else float("nan")
    rows[launcher] = dict(wall=wall, cpu=cpu, sub=total_children - cpu, rc=rc, done=done, rate=(len(starts) - 1) / span, size=size, metrics=metrics)
    if rc != 0 or done != n:
        sys.exit(f"{launcher}: exit {rc}, {done}/{n} trials done; see {w}/{launcher}.log")

# The cluster's own ceiling: bare `srun true` jobs, J at a time, no sweep.
m = min(n, 200)
t0 = time.monotonic()
procs = []
for i in range(m):
    while sum(p.poll() is None for p in procs) >= j:
        time.sleep(0.005)
    procs.append(subprocess.Popen(["srun", "-J", "bench.bare", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
for p in procs:
    p.wait()
bare = m / (time.monotonic() - t0)

def timed(cmd, k=20):
    t0 = time.monotonic()
    for _ in range(k):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return (time.monotonic() - t0) / k * 1000

uid = str(os.getuid())
sq = timed(["squeue", "-h", "-u", uid, "-o", "%i|%j"])
sq_all = timed(["squeue", "-h", "-t", "all", "-o", "%i|%j|%T"])
last = subprocess.run(["squeue", "-h", "-t", "all", "-n", "bench.bare", "-o", "%i"], capture_output=True, text=True).stdout.split()
sc = timed(["scontrol", "show", "job", "-o", last[0]]) if last else float("nan")
known = len(subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i"], capture_output=True, text=True).stdout.split())

# Write path: rows per second while 8 workers stream as fast as they can.
fire = {}
steps = int(sys.argv[5])
for launcher in ("local", "slurm"):
    db = f"{w}/firehose-{launcher}.db"
    t0 = time.monotonic()
    env = dict(os.environ, FAKE_STEPS=str(steps))
    rc = subprocess.run([sweep, "--db", db, "run", f"{w}/firehose-{launcher}.toml", "--results", f"{w}/results-fh-{launcher}", "--plain"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=w, env=env).returncode
    wall = time.monotonic() - t0
    con = sqlite3.connect(db)
    rows_written = con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    con.close()
    if rc != 0:
        sys.exit(f"firehose {launcher}: exit {rc}")
    fire[launcher] = rows_written / wall
    row_bytes = os.path.getsize(db) / rows_written

# What one srun in flight costs the submit host (memory, threads).
p = subprocess.Popen(["srun", "-J", "bench.rss", "sleep", "3"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1.5)
status = open(f"/proc/{p.pid}/status").read()
srun_rss = int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmRSS")))
srun_threads = int(next(l.split()[1] for l in status.splitlines() if l.startswith("Threads")))
p.wait()

L, S = rows["local"], rows["slurm"]
print(f"{n} stand-in trials, {j} in flight, on {os.cpu_count()} cores ({time.strftime('%Y-%m-%d')})")
print(f"{'':44s} {'local':>12s} {'slurm':>12s} {'slurm/local':>12s}")
def line(label, a, b, fmt="{:12.2f}"):
    ratio = b / a if a else float("nan")
    print(f"{label:44s} {fmt.format(a)} {fmt.format(b)} {ratio:12.2f}")
line("wall time (s)", L["wall"], S["wall"])
line("trials per second", n / L["wall"], n / S["wall"])
line("attempts started per second", L["rate"], S["rate"])
line("coordinator CPU per trial (ms)", L["cpu"] / n * 1000, S["cpu"] / n * 1000)
line("its children's CPU per trial (ms)", L["sub"] / n * 1000, S["sub"] / n * 1000)
line("database size (KiB)", L["size"] / 1024, S["size"] / 1024, "{:12.0f}")
line("metric rows written per second, this sweep", L["metrics"] / L["wall"], S["metrics"] / S["wall"], "{:12.0f}")
line(f"write path: metric rows/s (8 x {steps} steps)", fire["local"], fire["slurm"], "{:12.0f}")
print(f"(local children: the stand-in workers; slurm children: one srun per attempt; slurm's workers run under slurmstepd)")
print(f"bare `srun true` jobs per second ({j} at a time, no sweep):       {bare:8.2f}")
print(f"squeue of our active jobs (ms per call):                        {sq:8.1f}")
print(f"squeue -t all, {known} jobs known to slurmctld (ms per call):     {sq_all:8.1f}")
print(f"scontrol show job (ms per call):                                {sc:8.1f}")
print(f"database bytes per trial (1 epoch, 1 train record):              {S['size'] / n:8.0f}")
print(f"database bytes per metric row (firehose):                       {row_bytes:8.0f}")
print(f"one srun in flight on the submit host: {srun_rss / 1024:.1f} MiB RSS, {srun_threads} threads")
PY
