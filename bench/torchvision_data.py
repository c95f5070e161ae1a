"""The torchvision input pipeline alone, for bench/data-vs-torchvision.sh.

ImageFolder + DataLoader with RandomResizedCrop(S) + RandomHorizontalFlip +
ToTensor + Normalize (ImageNet), shuffled, `num_workers` W, no model: it times
how fast batches come out, epoch by epoch, and prints one JSON object.

    python bench/torchvision_data.py TRAIN_DIR IMAGE_SIZE BATCH NUM_WORKERS EPOCHS
"""
import json
import sys
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def main():
    root, size, batch, workers, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    # One thread in the main process, as each DataLoader worker process has.
    torch.set_num_threads(1)
    tf = transforms.Compose([
        transforms.RandomResizedCrop(size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    ds = datasets.ImageFolder(root, transform=tf)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        n = 0
        for x, y in loader:
            n += x.shape[0]
        rates.append(n / (time.perf_counter() - t0))
    print(json.dumps({"images": len(ds), "num_workers": workers, "epoch1_img_s": rates[0], "later_img_s": sum(rates[1:]) / len(rates[1:]), "epochs_img_s": rates}))


if __name__ == "__main__":
    main()
