#!/usr/bin/env python3
"""Wall time and peak memory (max RSS) of sweep's read-only commands.

    bench/readonly.sh [DB]

Runs `sweep report`, `sweep status` and `sweep show` on a demo database
(default results/results.db, made by `make demo`) REPEAT times each and prints
the median wall time and the largest peak RSS, next to the targets (50 ms,
30 MB). A benchmark, not a test: the machine may be noisy.
"""
import os
import resource
import statistics
import subprocess
import sys
import time

BIN = os.environ.get("SWEEP_BIN", "target/release/sweep")
DB = sys.argv[1] if len(sys.argv) > 1 else "results/results.db"
REPEAT = int(os.environ.get("REPEAT", "15"))


def first_trial():
    out = subprocess.run([BIN, "--db", DB, "report", "--format", "csv"], check=True, capture_output=True, text=True).stdout
    return out.splitlines()[1].split(",")[1]


def measure(args):
    """(median wall s, max peak RSS in MB) of REPEAT runs, each in its own child."""
    walls, rss = [], []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.execv(BIN, [BIN, "--db", DB] + args)
        _, status, usage = os.wait4(pid, 0)
        walls.append(time.perf_counter() - t0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"{' '.join(args)} failed")
        rss.append(usage.ru_maxrss / 1024)
    return statistics.median(walls), max(rss)


def main():
    if not os.path.exists(DB):
        sys.exit(f"no database at {DB}; run `make demo` first or pass a path")
    trial = first_trial()
    cases = [
        ["report", "--best", "accuracy"],
        ["report", "--group-by", "backbone"],
        ["status"],
        ["show", trial],
    ]
    print(f"sweep read-only commands on {DB} ({REPEAT} runs each; target < 50 ms, < 30 MB)")
    print(f"{'command':<32} {'median wall':>12} {'peak RSS':>10}")
    for args in cases:
        wall, rss = measure(args)
        print(f"{' '.join(args)[:32]:<32} {wall * 1000:>9.1f} ms {rss:>7.1f} MB")


if __name__ == "__main__":
    main()
