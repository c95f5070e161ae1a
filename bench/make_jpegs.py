"""A photo-sized JPEG ImageFolder for the data benchmarks: 500x375 (and
375x500) images of smooth gradients, shapes and sensor-like noise, saved at
quality 90 (what a camera or a web photo set looks like to a decoder).

    python bench/make_jpegs.py OUT_DIR TRAIN_IMAGES [CLASSES]
valid/ and test/ get 2 images per class (an ImageFolder needs all three).
"""
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


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


def main():
    out, n, classes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10
    rng = np.random.default_rng(0)
    for split, count in [("train", n), ("valid", 2 * classes), ("test", 2 * classes)]:
        for i in range(count):
            c = i % classes
            d = os.path.join(out, split, f"c{c:02d}")
            os.makedirs(d, exist_ok=True)
            w, h = (500, 375) if i % 4 else (375, 500)
            image(rng, w, h).save(os.path.join(d, f"{i:06d}.jpg"), quality=90)


if __name__ == "__main__":
    main()
