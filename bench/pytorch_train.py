"""The PyTorch script `sweep` replaces: the notebook's training loop with
torchvision's ImageFolder, DataLoader and transforms. Used by
bench/cpu-vs-pytorch.sh (throughput on the same data and model) and by
bench/sweep-vs-pytorch.sh (one process per trial, from a cold start, as a
user runs a sweep by hand).

usage: pytorch_train.py DATA BACKBONE IMAGE_SIZE EPOCHS BATCH WORKERS THREADS [--lr LR] [--test]
  --lr LR   SGD learning rate (momentum 0.9, as sweep's default optimizer); default 0.01
  --test    also evaluate the test split at the end, on the weights of the
            epoch with the best validation accuracy (what the sweep worker does)
prints one JSON line: {"train_images_per_s", "wall_s", "val_accuracy",
"test_accuracy", "started_at", "imported_at", "ended_at", and where the time
went: "import_s", "setup_s", "data_s", "train_s", "eval_s"}. With WORKERS = 0
the images are decoded in this process, inside the DataLoader's iteration:
`data_s` is the time spent waiting for batches (decode + transforms), in
training and evaluation; `train_s` and `eval_s` are the model's share.
"""
import time

started_at = time.time()

import copy  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torchvision  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402

imported_at = time.time()

args = sys.argv[1:]
lr, run_test = 0.01, False
if "--test" in args:
    args.remove("--test")
    run_test = True
if "--lr" in args:
    i = args.index("--lr")
    lr = float(args[i + 1])
    del args[i : i + 2]
data, backbone, size, epochs, batch, workers, threads = args[0], args[1], *map(int, args[2:7])
torch.set_num_threads(threads)
torch.manual_seed(0)
resize = round(size * 256 / 224)
norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
train_tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm])
eval_tf = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(size), transforms.ToTensor(), norm])
train = datasets.ImageFolder(f"{data}/train", train_tf)
valid = datasets.ImageFolder(f"{data}/valid", eval_tf)
test = datasets.ImageFolder(f"{data}/test", eval_tf) if run_test else None
dl = torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, num_workers=workers)
vl = torch.utils.data.DataLoader(valid, batch_size=batch, num_workers=workers)
model = getattr(torchvision.models, backbone)(**({"image_size": size} if backbone.startswith("vit_") else {}), weights=None)


def mlp(feat):
    """sweep's default head: features → 512 → ReLU → 512 → ReLU → classes."""
    return nn.Sequential(nn.Linear(feat, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, len(train.classes)))


# Where sweep's MLP head goes, per family (docs/sweep-file.md, Backbones).
if backbone.startswith("convnext"):
    model.classifier[2] = mlp(model.classifier[2].in_features)
elif backbone.startswith(("efficientnet", "mobilenet")):
    model.classifier = mlp(model.classifier[0].in_features if backbone.startswith("mobilenet") else model.classifier[1].in_features)
elif backbone.startswith("vit"):
    model.heads = mlp(model.heads.head.in_features)
elif backbone.startswith("swin"):
    model.head = mlp(model.head.in_features)
elif backbone.startswith("vgg"):
    model.classifier = mlp(512 * 7 * 7)
else:
    model.fc = mlp(model.fc.in_features)
opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
t0 = time.time()
setup_s = t0 - imported_at
data_s = train_s = eval_s = 0.0
train_time = 0.0  # the training loops, batches waited for included (as before)
seen = 0


def evaluate(loader):
    """Accuracy over `loader`; adds to the data and eval clocks."""
    global data_s, eval_s
    model.eval()
    correct = n = 0
    with torch.no_grad():
        t = time.time()
        for x, y in loader:
            u = time.time()
            data_s += u - t
            correct += (model(x).argmax(-1) == y).sum().item()
            n += len(y)
            t = time.time()
            eval_s += t - u
    return correct / max(n, 1)


best_acc, best_state = -1.0, None
for epoch in range(epochs):
    model.train()
    t = te = time.time()
    for x, y in dl:
        u = time.time()
        data_s += u - t
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
        t = time.time()
        train_s += t - u
    train_time += time.time() - te
    val_acc = evaluate(vl)
    if val_acc > best_acc:
        best_acc = val_acc
        if run_test:
            best_state = copy.deepcopy(model.state_dict())
test_acc = None
if run_test:
    model.load_state_dict(best_state)
    test_acc = evaluate(torch.utils.data.DataLoader(test, batch_size=batch, num_workers=workers))
ended_at = time.time()
print(
    json.dumps(
        {
            "train_images_per_s": seen / train_time,
            "wall_s": ended_at - t0,
            "val_accuracy": best_acc,
            "test_accuracy": test_acc,
            "started_at": started_at,
            "imported_at": imported_at,
            "ended_at": ended_at,
            "import_s": imported_at - started_at,
            "setup_s": setup_s,
            "data_s": data_s,
            "train_s": train_s,
            "eval_s": eval_s,
        }
    )
)
