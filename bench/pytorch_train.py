"""The PyTorch script `sweep` replaces: the notebook's training loop with
torchvision's ImageFolder, DataLoader and transforms. Used by
bench/cpu-vs-pytorch.sh to compare throughput on the same data and model.

usage: pytorch_train.py DATA BACKBONE IMAGE_SIZE EPOCHS BATCH WORKERS THREADS
prints one JSON line: {"train_images_per_s": ..., "wall_s": ...}
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torchvision
from torchvision import datasets, transforms

data, backbone, size, epochs, batch, workers, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:8])
torch.set_num_threads(threads)
torch.manual_seed(0)
resize = round(size * 256 / 224)
norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
train_tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm])
eval_tf = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(size), transforms.ToTensor(), norm])
train = datasets.ImageFolder(f"{data}/train", train_tf)
valid = datasets.ImageFolder(f"{data}/valid", eval_tf)
dl = torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, num_workers=workers)
vl = torch.utils.data.DataLoader(valid, batch_size=batch, num_workers=workers)
model = getattr(torchvision.models, backbone)(weights=None)
feat = model.fc.in_features
model.fc = nn.Sequential(nn.Linear(feat, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, len(train.classes)))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
t0 = time.time()
train_time = 0.0
seen = 0
for epoch in range(epochs):
    model.train()
    te = time.time()
    for x, y in dl:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    train_time += time.time() - te
    model.eval()
    with torch.no_grad():
        for x, y in vl:
            model(x)
print(json.dumps({"train_images_per_s": seen / train_time, "wall_s": time.time() - t0}))
