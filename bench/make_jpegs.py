"""A photo-sized JPEG ImageFolder for the data benchmarks: 500x375 (and
375x500) images of smooth gradients, shapes and sensor-like noise, saved at
quality 90 (what a camera or a web photo set looks like to a decoder).

    python bench/make_jpegs.py OUT_DIR TRAIN_IMAGES [CLASSES] [PROCESSES]
valid/ and test/ get 2 images per class (an ImageFolder needs all three).
PROCESSES (default: every core) write the images in parallel; each image has
its own seed (split, index), so the set is the same whatever their number.
About 27 ms and 43 KB an image on one core.
"""
import os
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SPLITS = ("train", "valid", "test")


def image(rng, w, h):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([
        rng.uniform(40, 200) + rng.uniform(-0.3, 0.3) * x + rng.uniform(-0.3, 0.3) * y for _ in range(3)
    ], axis=-1)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        r = rng.integers(10, 120)
        d.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    img = img.filter(ImageFilter.GaussianBlur(2))
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write(task):
    out, split, i, classes = task
    rng = np.random.default_rng([SPLITS.index(split), i])
    w, h = (500, 375) if i % 4 else (375, 500)
    path = os.path.join(out, split, f"c{i % classes:02d}", f"{i:06d}.jpg")
    image(rng, w, h).save(path, quality=90)


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    classes = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    processes = int(sys.argv[4]) if len(sys.argv) > 4 else (os.cpu_count() or 1)
    tasks = []
    for split, count in [("train", n), ("valid", 2 * classes), ("test", 2 * classes)]:
        for c in range(min(count, classes)):
            os.makedirs(os.path.join(out, split, f"c{c:02d}"), exist_ok=True)
        tasks += [(out, split, i, classes) for i in range(count)]
    if processes <= 1:
        for t in tasks:
            write(t)
    else:
        with Pool(processes) as pool:
            for _ in pool.imap_unordered(write, tasks, chunksize=32):
                pass


if __name__ == "__main__":
    main()
