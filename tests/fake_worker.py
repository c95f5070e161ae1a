#!/usr/bin/env python3
"""Scripted stand-in for `sweep-worker`: speaks protocol 2 (JSON lines on
stdout, stop lines on stdin) without libtorch, so the coordinator's scheduling,
retries, signals, stopping, retention and Slurm paths are tested in seconds.
The harness (tests/common, `Sweep::fake_worker`) points SWEEP_WORKER_CMD at it;
the coordinator then runs `$SWEEP_WORKER_CMD --job JSON` for each attempt.
This script checks the job's keys (exit 2 on a bad job), then behaves as
FAKE_MODE says:

  ok             hello, data, train_step/epoch/checkpoint messages for
                 job.config.epochs epochs, test, confusion, misclassified, done
  hang           hello, then sleeps forever
  garbage        malformed, non-JSON, unknown-type, over-long and non-UTF-8
                 lines, then behaves as ok
  exit0_no_done  hello, data, one epoch, exit 0 without `done`
  crash          hello, data, one epoch, exit 3
  error_oom      hello, data, error {class: oom}, exit 1
  ignore_term    ignores SIGTERM, loops until killed
  term_ok        on SIGTERM prints error {class: interrupted} and exits 130
  block          hello, data, the first epoch, then waits (up to FAKE_TIMEOUT)
                 for the file FAKE_DIR/release; then behaves as ok
  curve          like ok, but val_accuracy follows a saturating curve whose
                 ceiling is 10 x the trial's lr (so trials differ; flat after
                 epoch FAKE_PLATEAU when set), one epoch
                 every FAKE_EPOCH_S seconds (default 0.2); SIGTERM is handled
                 as in term_ok; resumes after the epochs listed in
                 out_dir/fake_epochs (one line per finished epoch); reads
                 protocol-2 lines on stdin: on {"type":"stop","after_epoch":e}
                 it stops at the next step boundary, appends
                 `stopline <trial> <e> <epochs done>` to FAKE_DIR/events, tests
                 when the line says "test": true, sends `done` and exits 0;
                 with the job's `pause_after` (ok and curve modes) it trains
                 to that epoch, appends `pause <trial> <epoch> <monotonic>` to
                 FAKE_DIR/events, sends `done` without testing and exits 0

Other environment variables (all optional):

  FAKE_DIR       directory where one line per event is appended to `events`:
                 `start <trial> <pid> <CUDA_VISIBLE_DEVICES or -> <monotonic>`,
                 `ready <trial> <pid> <monotonic>` (after the first epoch in
                 block/ignore_term/term_ok mode), `end <trial> <pid> <mode> <monotonic>`
  FAKE_BARRIER   N: after `start`, wait until FAKE_DIR/events holds N start
                 lines (proves N workers ran at once); exit 1 on FAKE_TIMEOUT
  FAKE_STEPS     train_step messages per epoch (default 3)
  FAKE_TIMEOUT   seconds any wait gives up after (default 30)
  FAKE_PROTOCOL  the protocol version `hello` claims (default 2)
  FAKE_FAST_RETRY  curve mode: every attempt after the first (a retry,
                 whether or not it resumes from a checkpoint, even when the
                 first died before it started) runs its epochs
                 without FAKE_EPOCH_S sleeps (a first attempt too slow for
                 a time limit, a retry that fits in it)
  FAKE_IGNORE_STDIN  1: curve mode does not read stdin (a worker deaf to
                 stop lines: the coordinator's SIGTERM fallback stops it)

Python 3 standard library only.
"""
import json
import os
import signal
import sys
import threading
import time

MODE = os.environ.get("FAKE_MODE", "ok")
FAKE_DIR = os.environ.get("FAKE_DIR")
TIMEOUT = float(os.environ.get("FAKE_TIMEOUT", "30"))
STEPS = int(os.environ.get("FAKE_STEPS", "3"))
BARRIER = int(os.environ.get("FAKE_BARRIER", "0"))
RETRY = False  # curve mode: an earlier attempt of this trial started

CLASSES = ["a", "b"]

# Set by the stdin reader thread: {"after_epoch": e, "test": bool}.
STOP_LINE = {}
EPOCHS_DONE = [0]


def read_stdin():
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            log("ignored stdin line %r" % line[:80])
            continue
        if isinstance(msg, dict) and msg.get("type") == "stop":
            STOP_LINE.update(after_epoch=int(msg["after_epoch"]), test=bool(msg.get("test", False)))


def check_stop(job):
    """At a step boundary: honour a stop line (test if asked, done, exit 0)."""
    if not STOP_LINE:
        return
    trial = job["trial"]
    event("stopline", trial, STOP_LINE["after_epoch"], EPOCHS_DONE[0])
    if STOP_LINE["test"]:
        test_results(EPOCHS_DONE[0])
    emit("done", epochs=EPOCHS_DONE[0], wall_s=0.1, images_per_s=100.0, best_val_accuracy=0.5)
    event("end", trial, os.getpid(), "stopped", time.monotonic())
    sys.exit(0)


def log(text):
    sys.stderr.write("fake_worker: %s\n" % text)
    sys.stderr.flush()


def event(*fields):
    """Appends one line to FAKE_DIR/events with a single O_APPEND write (atomic)."""
    if not FAKE_DIR:
        return
    line = (" ".join(str(f) for f in fields) + "\n").encode()
    fd = os.open(os.path.join(FAKE_DIR, "events"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def start_lines():
    if not FAKE_DIR:
        return 0
    try:
        with open(os.path.join(FAKE_DIR, "events")) as f:
            return sum(1 for line in f if line.startswith("start "))
    except FileNotFoundError:
        return 0


def wait_for(cond, what):
    deadline = time.monotonic() + TIMEOUT
    while not cond():
        if time.monotonic() > deadline:
            log("gave up waiting for %s after %ss" % (what, TIMEOUT))
            sys.exit(1)
        time.sleep(0.02)


def emit(msg_type, **fields):
    msg = {"type": msg_type}
    msg.update(fields)
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def raw(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def parse_job(argv):
    if len(argv) != 3 or argv[1] != "--job":
        log("usage: fake_worker.py --job JSON (got %r)" % argv[1:])
        sys.exit(2)
    job = json.loads(argv[2])
    for key in ("trial", "sweep", "dataset", "out_dir", "threads", "config"):
        if key not in job:
            log("job lacks %r" % key)
            sys.exit(2)
    return job


def hello(job):
    cuda = os.environ.get("CUDA_VISIBLE_DEVICES", "") != ""
    emit(
        "hello",
        protocol=int(os.environ.get("FAKE_PROTOCOL", "2")),
        trial=job["trial"],
        pid=os.getpid(),
        libtorch="fake",
        device="cuda:0" if cuda else "cpu",
        cuda=cuda,
        threads=int(job["threads"]),
    )


def data():
    emit(
        "data",
        classes=CLASSES,
        counts=[{"split": s, "counts": [4, 4]} for s in ("train", "valid", "test")],
        skipped=0,
        decode_s=0.01,
    )


def epoch(job, e):
    """One epoch of train_step messages, an epoch summary and a checkpoint."""
    lr = float(job["config"]["lr"])
    for b in range(1, STEPS + 1):
        if MODE == "curve":
            check_stop(job)
            if not (RETRY and os.environ.get("FAKE_FAST_RETRY")):
                time.sleep(float(os.environ.get("FAKE_EPOCH_S", "0.2")) / STEPS)
        step = (e - 1) * STEPS + b
        emit("train_step", epoch=e, batch=b, step=step, loss=1.0 / step, accuracy=0.5, lr=lr, images_per_s=100.0)
    acc = min(1.0, 0.4 + 0.1 * e)
    if MODE == "curve":
        ceiling = min(0.99, 10.0 * float(job["config"]["lr"]))
        plateau = int(os.environ.get("FAKE_PLATEAU", "0"))
        acc = ceiling * (1.0 - 0.5 ** (min(e, plateau) if plateau else e))
    emit(
        "epoch",
        epoch=e,
        train_loss=1.0 / e,
        train_accuracy=acc,
        val_loss=1.1 / e,
        val_accuracy=acc,
        step=e * STEPS,
        seconds=0.01,
        images_per_s=100.0,
    )
    emit("checkpoint", epoch=e, kind="last", path=os.path.join(job["out_dir"], "last.safetensors"))
    if MODE == "curve":
        os.makedirs(job["out_dir"], exist_ok=True)
        with open(os.path.join(job["out_dir"], "fake_epochs"), "a") as f:
            f.write("%d\n" % e)
    EPOCHS_DONE[0] = e


def test_results(epoch):
    emit(
        "test",
        loss=0.5,
        accuracy=0.75,
        n=8,
        per_class=[
            {"class": "a", "correct": 3, "total": 4, "accuracy": 0.75},
            {"class": "b", "correct": 3, "total": 4, "accuracy": 0.75},
        ],
        epoch=epoch,
    )
    emit("confusion", classes=CLASSES, matrix=[[3, 1], [1, 3]])


def finish(job, first_epoch=1):
    epochs = int(job["config"]["epochs"])
    pause = job.get("pause_after")
    if pause is not None and int(pause) < epochs:
        # Promotion-based stopping: train to the rung, keep the checkpoint, `done`, exit 0.
        for e in range(first_epoch, int(pause) + 1):
            epoch(job, e)
        event("pause", job["trial"], max(EPOCHS_DONE[0], first_epoch - 1), time.monotonic())
        emit("done", epochs=EPOCHS_DONE[0], wall_s=0.1, images_per_s=100.0, best_val_accuracy=0.5)
        return
    for e in range(first_epoch, epochs + 1):
        epoch(job, e)
    if MODE == "curve":
        check_stop(job)
    test_results(epochs)
    emit(
        "misclassified",
        items=[
            {"file": "test/a/x.png", "truth": "a", "pred": "b", "prob": 0.9},
            {"file": "test/b/y.png", "truth": "b", "pred": "a", "prob": 0.8},
        ],
    )
    emit("done", epochs=epochs, wall_s=0.1, images_per_s=100.0, best_val_accuracy=min(1.0, 0.4 + 0.1 * epochs))


def idle_forever():
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.05)
    log("still alive after %ss; giving up" % TIMEOUT)
    sys.exit(1)


def main():
    job = parse_job(sys.argv)
    trial = job["trial"]
    pid = os.getpid()

    if MODE == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif MODE in ("term_ok", "curve"):
        def on_term(_sig, _frame):
            event("term", trial, pid, time.monotonic())
            emit("error", **{"class": "interrupted", "message": "stopped by SIGTERM"})
            sys.stdout.flush()
            os._exit(130)

        signal.signal(signal.SIGTERM, on_term)

    global RETRY
    started_marker = os.path.join(job["out_dir"], "fake_started")
    # A retry: an earlier attempt started, or has a log (the coordinator
    # writes attempt-N.log beside out_dir's files; an attempt killed before
    # this line never wrote the marker).
    logs = [f for f in os.listdir(job["out_dir"]) if f.startswith("attempt-")] if os.path.isdir(job["out_dir"]) else []
    RETRY = MODE == "curve" and (os.path.exists(started_marker) or len(logs) > 1)
    if MODE == "curve":
        open(started_marker, "a").close()
    if MODE == "curve" and os.environ.get("FAKE_IGNORE_STDIN") != "1":
        threading.Thread(target=read_stdin, daemon=True).start()
    event("start", trial, pid, os.environ.get("CUDA_VISIBLE_DEVICES") or "-", time.monotonic())
    if BARRIER:
        wait_for(lambda: start_lines() >= BARRIER, "%d start lines" % BARRIER)

    hello(job)
    if MODE == "hang":
        event("ready", trial, pid, time.monotonic())
        while True:
            time.sleep(3600)

    if MODE == "garbage":
        raw("this is not json")
        raw("{\"type\": \"epoch\"")  # truncated JSON
        raw("{\"type\": \"epoch\", \"epoch\": 1}")  # missing fields
        raw("{\"type\": \"no_such_message\", \"x\": 1}")  # unknown type
        raw("[1, 2, 3]")
        raw("null")
        raw("x" * (8 * 1024 * 1024 + 10))  # over MAX_LINE_BYTES
        sys.stdout.buffer.write(b"\xff\xfe not utf-8 \x80\n")
        sys.stdout.flush()

    data()
    if MODE == "error_oom":
        emit("error", **{"class": "oom", "message": "CUDA out of memory (fake)"})
        sys.exit(1)
    if MODE in ("ignore_term", "term_ok"):
        event("ready", trial, pid, time.monotonic())
        idle_forever()

    epoch(job, 1)
    if MODE == "exit0_no_done":
        event("end", trial, pid, MODE, time.monotonic())
        sys.exit(0)
    if MODE == "crash":
        log("simulated crash")
        event("end", trial, pid, MODE, time.monotonic())
        sys.exit(3)
    if MODE == "block":
        event("ready", trial, pid, time.monotonic())
        wait_for(lambda: os.path.exists(os.path.join(FAKE_DIR or ".", "release")), "the release file")

    first = 2
    if MODE == "curve":
        try:
            with open(os.path.join(job["out_dir"], "fake_epochs")) as f:
                first = max(int(x) for x in f.read().split()) + 1
            EPOCHS_DONE[0] = first - 1
        except (OSError, ValueError):
            pass
    finish(job, first_epoch=first)
    event("end", trial, pid, MODE, time.monotonic())


if __name__ == "__main__":
    main()
