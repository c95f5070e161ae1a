#!/usr/bin/env python3
"""A plain PyTorch + torchvision training script, swept by `sweep` with no
line of Rust and no package to install (see docs/program.md):

    sweep data demo data/demo
    sweep run examples/pytorch/sweep.toml
    sweep report

It is an ordinary script: argparse for its hyperparameters, an ImageFolder
(train/ valid/ test/), a small CNN or a torchvision resnet18. What makes it
sweep-ready is three habits, all plain Python:

* it prints one JSON object per epoch on stdout (`report` below): `sweep`
  records every numeric field under its name, and judges early stopping on
  the sweep's metric; `test_*` fields are test results;
* on SIGTERM (an early-stopping verdict, Ctrl-C, a Slurm time limit) it
  finishes the batch, saves its checkpoint and exits 0;
* it saves a checkpoint in its trial folder after every epoch and resumes
  from it, so a crashed or interrupted trial continues where it stopped,
  bit for bit (model, optimizer and random state).
"""
import argparse
import json
import os
import signal
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision import datasets, models, transforms


def report(**fields):
    """One metric record for sweep: a JSON object on one line, flushed."""
    print(json.dumps(fields), flush=True)


STOP = False


def on_sigterm(signum, frame):
    global STOP
    STOP = True


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class SmallCNN(nn.Module):
    def __init__(self, classes, width, dropout):
        super().__init__()
        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

        self.features = nn.Sequential(
            block(3, width), nn.MaxPool2d(2), block(width, 2 * width), nn.MaxPool2d(2), block(2 * width, 4 * width)
        )
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.fc(self.drop(x))


def load_split(root, split, size):
    if split == "valid" and not os.path.isdir(os.path.join(root, split)):
        split = "val"
    tf = transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    ds = datasets.ImageFolder(os.path.join(root, split), transform=tf)
    # Small data: decode once, keep it in memory as tensors.
    xs, ys = zip(*[ds[i] for i in range(len(ds))])
    return torch.stack(xs), torch.tensor(ys), ds.classes


def evaluate(model, x, y, batch):
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(x[i : i + batch])
            loss += F.cross_entropy(out, y[i : i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i : i + batch]).sum().item()
    return loss / len(x), correct / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/demo")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--model", choices=["cnn", "resnet18"], default="cnn")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", action="store_true", help="random horizontal flips")
    p.add_argument("--out", default=os.environ.get("SWEEP_TRIAL_DIR", "."))
    a = p.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    torch.manual_seed(a.seed)

    xtr, ytr, classes = load_split(a.data, "train", a.image_size)
    xva, yva, _ = load_split(a.data, "valid", a.image_size)
    xte, yte, _ = load_split(a.data, "test", a.image_size)
    if a.model == "cnn":
        model = SmallCNN(len(classes), a.width, a.dropout)
    else:
        model = models.resnet18(num_classes=len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=a.weight_decay)

    os.makedirs(a.out, exist_ok=True)
    ckpt = os.path.join(a.out, "checkpoint.pt")
    start = 0
    if os.path.exists(ckpt):
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        start = state["epoch"]
        log(f"resumed after epoch {start} from {ckpt}")
    log(f"{len(xtr)} training images, {len(classes)} classes, lr={a.lr}, epochs={a.epochs}")

    epoch = start
    while epoch < a.epochs and not STOP:
        t0 = time.time()
        model.train()
        order = torch.randperm(len(xtr))
        seen, loss_sum, correct = 0, 0.0, 0
        for i in range(0, len(xtr), a.batch_size):
            if STOP:
                break
            idx = order[i : i + a.batch_size]
            x, y = xtr[idx], ytr[idx]
            if a.augment:
                flip = torch.rand(len(x)) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
        if STOP:
            break  # the epoch is not finished: the checkpoint of the last one stays
        epoch += 1
        val_loss, val_acc = evaluate(model, xva, yva, 256)
        report(
            epoch=epoch,
            train_loss=loss_sum / seen,
            train_acc=correct / seen,
            val_loss=val_loss,
            val_acc=val_acc,
            seconds=time.time() - t0,
        )
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch, "rng": torch.get_rng_state()}
        torch.save(state, ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)
    if STOP:
        log(f"SIGTERM: stopped after epoch {epoch}; its checkpoint is kept")
        return
    test_loss, test_acc = evaluate(model, xte, yte, 256)
    report(epoch=epoch, test_loss=test_loss, test_acc=test_acc)


if __name__ == "__main__":
    main()
