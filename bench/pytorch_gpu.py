"""The PyTorch script bench/gpu.sh compares `sweep` with: ResNet-50 with the
sweep's default 512-512 head, SGD, mixed precision (autocast + GradScaler),
channels_last, cudnn.benchmark, torchvision ImageFolder + DataLoader
(RandomResizedCrop + flip + ToTensor + Normalize, pinned memory,
non_blocking copies), the way a careful PyTorch user writes it.

usage: pytorch_gpu.py DATA IMAGE_SIZE EPOCHS BATCH WORKERS
prints one JSON line: per-epoch train img/s, peak GPU memory.
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torchvision
from torchvision import datasets, transforms

data, size, epochs, batch, workers = sys.argv[1], *map(int, sys.argv[2:6])
torch.manual_seed(0)
torch.backends.cudnn.benchmark = True
dev = torch.device("cuda")
norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
train_tf = transforms.Compose([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), norm])
train = datasets.ImageFolder(f"{data}/train", train_tf)
dl = torch.utils.data.DataLoader(train, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=True, persistent_workers=workers > 0)
model = torchvision.models.resnet50(weights=None)
model.fc = nn.Sequential(nn.Linear(model.fc.in_features, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, len(train.classes)))
model = model.to(dev, memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
scaler = torch.amp.GradScaler("cuda")
rates = []
for epoch in range(epochs):
    model.train()
    torch.cuda.synchronize()
    t0 = time.time()
    seen = 0
    for x, y in dl:
        x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(dev, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        seen += len(y)
    torch.cuda.synchronize()
    rates.append(seen / (time.time() - t0))
print(json.dumps({"epochs_img_s": rates, "peak_allocated_mib": torch.cuda.max_memory_allocated() / 2**20, "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20}))
