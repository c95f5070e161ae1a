#!/usr/bin/env python3
"""Reads an MLflow tracking server back with MLflow's own client (the PyPI
`mlflow` package) and prints one JSON object: for each experiment named on
the command line, its runs by their `sweep.trial_id` tag:

  {EXPERIMENT: {TRIAL: {"status": ..., "end_time": ms, "params": {...}, "tags": {...},
                        "metrics": [[key, step, timestamp, value bits], ...]}}}

Usage: read_mlflow.py TRACKING_URI EXPERIMENT... A value is printed as the
64-bit pattern of the double, for a comparison bit for bit.
"""
import json
import struct
import sys

from mlflow.tracking import MlflowClient


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def main():
    client = MlflowClient(tracking_uri=sys.argv[1])
    out = {}
    for name in sys.argv[2:]:
        exp = client.get_experiment_by_name(name)
        runs = {}
        if exp is not None:
            for run in client.search_runs([exp.experiment_id], max_results=50000):
                trial = run.data.tags.get("sweep.trial_id")
                metrics = []
                for key in run.data.metrics:
                    for m in client.get_metric_history(run.info.run_id, key):
                        metrics.append([m.key, m.step, m.timestamp, bits(m.value)])
                metrics.sort()
                if trial in runs:
                    raise SystemExit("two runs for trial %s" % trial)
                runs[trial] = {
                    "status": run.info.status,
                    "end_time": run.info.end_time,
                    "params": run.data.params,
                    "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") or k == "mlflow.runName"},
                    "metrics": metrics,
                }
        out[name] = runs
    json.dump(out, sys.stdout, sort_keys=True)


if __name__ == "__main__":
    main()
