"""Makes torchvision reference data for tests/torchvision_parity.rs.

For each backbone: a random-init torchvision model (BatchNorm running stats
randomised too, so eval-mode BN is really exercised), saved exactly as
torchvision would (`torch.save(state_dict)` → .pth) and as .safetensors, a few
random S×S PNG images, and torchvision's logits on them (ToTensor + ImageNet
Normalize; no resize since the images are already S×S).

vit_b_16 is made at torchvision's 224 px (the checkpoint has 14×14 + 1
position embeddings, as the ImageNet weights do) and its logits computed by
`vit_b_16(image_size=S)` loaded with torchvision's `interpolate_embeddings`:
what the worker must reproduce when it loads a 224-px file at another size.
The newer families' LayerNorms, layer scales and constant-initialised
parameters are randomised too (torch_models.randomise_for_parity).

usage: torchvision_reference.py OUT_DIR SIZE CLASSES BACKBONE...
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch_models import randomise_for_parity
from torchvision.models.vision_transformer import interpolate_embeddings

out, size, classes, backbones = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
rng = np.random.default_rng(0)
images = []
for i in range(3):
    arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    path = os.path.join(out, f"img{i}.png")
    Image.fromarray(arr).save(path)
    images.append(path)
tf = torchvision.transforms.Compose([
    torchvision.transforms.ToTensor(),
    torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])
x = torch.stack([tf(Image.open(p).convert("RGB")) for p in images])
result = {"images": images, "models": {}}
for name in backbones:
    model = getattr(torchvision.models, name)(weights=None, num_classes=classes)
    randomise_for_parity(model)
    model.eval()
    sd = model.state_dict()
    if name.startswith("vit_") and size != model.image_size:
        resized = getattr(torchvision.models, name)(weights=None, num_classes=classes, image_size=size)
        resized.load_state_dict(interpolate_embeddings(size, model.patch_size, dict(sd)))
        model = resized.eval()
    torch.save(sd, os.path.join(out, f"{name}.pth"))
    if name == "resnet18":
        # The pre-1.6 format older torchvision checkpoints still use.
        torch.save(sd, os.path.join(out, f"{name}.legacy.pth"), _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, f"{name}.safetensors"))
    with torch.no_grad():
        logits = model(x)
    result["models"][name] = logits.tolist()
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump(result, f)
