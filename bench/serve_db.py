#!/usr/bin/env python3
"""Adds a sweep of TRIALS trials x EPOCHS epochs to a sweep results database
(made by `sweep run`, so that its schema is sweep's own), for bench/serve.sh.

The rows are what the stand-in worker's `curve` mode and the recorder write
(validation accuracy saturating towards a ceiling set by lr and momentum,
train loss per step, ASHA decisions at rungs 1, 3, 9, 27), inserted directly:
running 10,000 stand-in trials through the coordinator takes far longer than
the benchmark itself on a 2-core machine.

usage: serve_db.py DB [TRIALS] [EPOCHS]
"""
import hashlib
import json
import math
import random
import sqlite3
import sys
import time

db, trials, epochs = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10000, int(sys.argv[3]) if len(sys.argv) > 3 else 30
rng = random.Random(0)
con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode=WAL")
now = time.time() - 3 * 3600
con.execute(
    "INSERT INTO sweeps (name, file, toml, description, metric, dataset, system_info, status, created_at, updated_at) "
    "VALUES ('bench', 'bench.toml', '', ?, 'val_accuracy', 'data', '{}', 'done', ?, ?)",
    (f"{trials} stand-in trials x {epochs} epochs for bench/serve.sh", now, now + 3 * 3600),
)
sweep_id = con.execute("SELECT id FROM sweeps WHERE name = 'bench'").fetchone()[0]
rungs = [r for r in (1, 3, 9, 27) if r < epochs]
t0 = now
slots = [now] * 8
trial_rows, attempt_rows, metric_rows, decision_rows = [], [], [], []
rung_best = {r: [] for r in rungs}
for k in range(trials):
    lr = math.exp(rng.uniform(math.log(1e-4), math.log(1e-1)))
    momentum = rng.uniform(0.5, 0.99)
    backbone = rng.choice(["resnet18", "resnet34", "resnet50", "efficientnet_b0"])
    batch = rng.choice([32, 64, 128])
    wd = math.exp(rng.uniform(math.log(1e-6), math.log(1e-2)))
    params = {"backbone": backbone, "lr": lr, "momentum": momentum, "batch_size": batch, "weight_decay": wd,
              "epochs": epochs, "image_size": 32, "seed": 0, "optimizer": "sgd"}
    tid = hashlib.sha256(f"bench{k}".encode()).hexdigest()[:10]
    ceiling = 0.95 * math.exp(-((math.log10(lr) + 2) ** 2) / 1.5) * (0.8 + 0.2 * momentum) + rng.uniform(-0.02, 0.02)
    speed = rng.uniform(0.1, 0.4)
    slot = min(range(8), key=lambda i: slots[i])
    start = slots[slot]
    stop_at = epochs
    for r in rungs:
        acc_r = ceiling * (1 - math.exp(-speed * r))
        hist = rung_best[r]
        # ASHA-like, but gentle: the worst tenth at each rung stops, so most trials run all epochs.
        cutoff = sorted(hist, reverse=True)[int(len(hist) * 0.9)] if len(hist) >= 10 else None
        action = "stop" if cutoff is not None and acc_r < cutoff else "continue"
        hist.append(acc_r)
        decision_rows.append((tid, r, "asha", rungs.index(r), 0, "val_accuracy", acc_r, cutoff, len(hist) - 1, action, start + r * 2.0))
        if action == "stop":
            stop_at = r
            break
    status = "pruned" if stop_at < epochs else "done"
    best = 0.0
    for e in range(1, stop_at + 1):
        t = start + e * 2.0
        acc = ceiling * (1 - math.exp(-speed * e)) + rng.uniform(-0.005, 0.005)
        loss = max(0.01, 2.5 * (1 - acc))
        best = max(best, acc)
        metric_rows += [
            (tid, 1, "valid", e, 0, e * 10, "accuracy", acc, t),
            (tid, 1, "valid", e, 0, e * 10, "loss", loss, t),
            (tid, 1, "train_epoch", e, 0, e * 10, "loss", loss * 0.9, t),
            (tid, 1, "train_epoch", e, 0, e * 10, "accuracy", min(1, acc * 1.05), t),
            (tid, 1, "train", e, 5, e * 10 - 5, "loss", loss * 1.1, t - 1),
            (tid, 1, "train", e, 10, e * 10, "loss", loss * 0.95, t),
        ]
    end = start + stop_at * 2.0 + 0.5
    slots[slot] = end
    device = f"cuda:{slot}"
    trial_rows.append((tid, sweep_id, k, json.dumps(params), backbone, lr, epochs, batch, 32, 0, status, device, stop_at,
                       best, end - start, rng.uniform(800, 3000), now, start, end))
    attempt_rows.append((tid, 1, 1000 + k, device, start, end, 0, "pruned" if status == "pruned" else None, batch))
con.executemany("INSERT INTO trials (id, sweep_id, ordinal, params, backbone, lr, epochs, batch_size, image_size, seed, status, device, epochs_done, best_val_accuracy, wall_s, images_per_s, created_at, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", trial_rows)
con.executemany("INSERT INTO attempts (trial_id, attempt, pid, device, started_at, finished_at, exit_code, error_class, batch_size) VALUES (?,?,?,?,?,?,?,?,?)", attempt_rows)
con.executemany("INSERT INTO metrics (trial_id, attempt, split, epoch, batch, step, name, value, time) VALUES (?,?,?,?,?,?,?,?,?)", metric_rows)
con.executemany("INSERT INTO decisions (trial_id, epoch, method, rung, bracket, metric, value, cutoff, compared, action, time) VALUES (?,?,?,?,?,?,?,?,?,?,?)", decision_rows)
con.commit()
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
con.close()
print(f"bench: {trials} trials, {len(metric_rows)} metric rows, {len(decision_rows)} decisions in {db}")
