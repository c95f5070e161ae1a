"""PyTorch reference for layer-wise lr decay (worker/tests/it/layer_decay.rs).

For each model: a torchvision model at IMAGE px (ViT built for that size),
parameters randomised as for the logit parity, dropout and stochastic depth
off, saved as MODEL_init.safetensors with STEPS fixed batches
(MODEL_batches.safetensors). The parameter groups are built here from the
fine-tuning recipes themselves, independently of the worker:

- vit_b_16: BEiT's `get_num_layer_for_vit` (embeddings 0, block i at i + 1,
  the rest 13), scale = decay ** (12 + 1 - layer);
- convnext_tiny: ConvNeXt's `get_num_layer_for_convnext` (downsample_layers
  and stages renamed to torchvision's `features.k`), scale = decay ** (12 + 1 - layer);
- swin_t: SimMIM's `get_swin_layer` (patch_embed 0, block j of stage s at
  sum(depths[:s]) + j + 1, the stage's downsample with its last block,
  the rest 13; SimMIM's `layers.s.blocks.j` / `layers.s.downsample` renamed
  to torchvision's `features.{2s+1}.j` / `features.{2s+2}`),
  scale = decay ** (12 + 1 - layer);
- resnet18: timm's block-by-block grouping (stem 0, each BasicBlock in
  order, fc last).

Each parameter's lr is base * (BACKBONE_LR_SCALE outside the class layer, else
1) * scale, one param group per distinct lr (in the JSON: name -> the lr's
IEEE bits). Then STEPS SGD (momentum, weight decay) steps in train mode (torch.optim, foreach=False); the loss of each step
goes to losses.safetensors, the final state_dict to MODEL_final.safetensors.

usage: layer_decay_reference.py OUT_DIR THREADS MODEL...
"""
import json
import os
import struct
import sys

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torch_models import randomise_for_parity
from torchvision.ops import StochasticDepth

out, threads, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
os.makedirs(out, exist_ok=True)
torch.set_num_threads(threads)

CLASSES = 5
BATCH = 4
STEPS = 2
IMAGE = 32
DECAY = 0.75
BACKBONE_LR_SCALE = 0.1
SGD = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
HEAD = {"resnet18": "fc", "convnext_tiny": "classifier.2", "vit_b_16": "heads.head", "swin_t": "head"}


def vit_layer(name):
    # BEiT: cls_token / pos_embed / patch_embed -> 0; blocks.i -> i + 1; the rest -> num_layers + 1.
    if name in ("class_token", "encoder.pos_embedding") or name.startswith("conv_proj."):
        return 0
    if name.startswith("encoder.layers.encoder_layer_"):
        return int(name.split(".")[2][len("encoder_layer_"):]) + 1
    return 13


def convnext_layer(name):
    # ConvNeXt's optim_factory.get_num_layer_for_convnext, num_max_layer = 12.
    # torchvision: features.0 = downsample_layers.0, features.2k = downsample_layers.k,
    # features.2s+1 = stages.s.
    parts = name.split(".")
    if parts[0] != "features":
        return 12 + 1
    k = int(parts[1])
    if k % 2 == 0:
        stage_id = k // 2
        if stage_id == 0:
            return 0
        if stage_id in (1, 2):
            return stage_id + 1
        return 12
    stage_id, block_id = (k - 1) // 2, int(parts[2])
    if stage_id in (0, 1):
        return stage_id + 1
    if stage_id == 2:
        return 3 + block_id // 3
    return 12


def swin_layer(name, depths=(2, 2, 6, 2)):
    # SimMIM's optimizer.get_swin_layer with num_layers = sum(depths) + 2, on
    # SimMIM's names: torchvision's features.0 is patch_embed, features.2s+1
    # is layers.s.blocks, features.2s+2 is layers.s.downsample.
    parts = name.split(".")
    if parts[0] != "features":
        return sum(depths) + 1
    k = int(parts[1])
    if k == 0:
        return 0
    if k % 2 == 1:
        simmim = f"layers.{(k - 1) // 2}.blocks.{parts[2]}"
    else:
        simmim = f"layers.{(k - 2) // 2}.downsample.{parts[2]}"
    layer_id = int(simmim.split(".")[1])
    block_id = simmim.split(".")[3]
    if block_id in ("reduction", "norm"):
        return sum(depths[:layer_id + 1])
    return sum(depths[:layer_id]) + int(block_id) + 1


def resnet_layer(name, blocks):
    parts = name.split(".")
    if parts[0] in ("conv1", "bn1"):
        return 0
    if parts[0].startswith("layer"):
        return blocks.index((int(parts[0][5:]), int(parts[1]))) + 1
    return len(blocks) + 1


def layers(name, model):
    """name -> (layer, top) for every parameter."""
    names = [n for n, _ in model.named_parameters()]
    if name == "vit_b_16":
        return {n: (vit_layer(n), 13) for n in names}
    if name == "convnext_tiny":
        return {n: (convnext_layer(n), 13) for n in names}
    if name == "swin_t":
        return {n: (swin_layer(n), 13) for n in names}
    blocks = sorted({(int(n.split(".")[0][5:]), int(n.split(".")[1])) for n in names if n.startswith("layer")})
    return {n: (resnet_layer(n, blocks), len(blocks) + 1) for n in names}


def state_dict(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


result = {"classes": CLASSES, "batch": BATCH, "steps": STEPS, "image": IMAGE, "layer_decay": DECAY,
          "backbone_lr_scale": BACKBONE_LR_SCALE, "sgd": SGD, "head": {}, "lrs": {}}
losses_out = {}
for mi, name in enumerate(models):
    torch.manual_seed(300 + mi)
    kwargs = {"image_size": IMAGE} if name.startswith("vit_") else {}
    model = getattr(torchvision.models, name)(weights=None, num_classes=CLASSES, **kwargs)
    randomise_for_parity(model)
    for m in model.modules():
        if isinstance(m, (torch.nn.Dropout, StochasticDepth)):
            m.p = 0.0
    save_file(state_dict(model), os.path.join(out, f"{name}_init.safetensors"))
    x = torch.randn(STEPS, BATCH, 3, IMAGE, IMAGE)
    y = torch.randint(0, CLASSES, (STEPS, BATCH))
    save_file({"x": x, "y": y}, os.path.join(out, f"{name}_batches.safetensors"))
    prefix = HEAD[name]
    result["head"][name] = prefix
    depth = layers(name, model)
    lrs, groups = {}, {}
    for n, p in model.named_parameters():
        layer, top = depth[n]
        backbone = 1.0 if n.startswith(prefix + ".") else BACKBONE_LR_SCALE
        lr = SGD["lr"] * (backbone * DECAY ** (top - layer))
        # The bits of the double: JSON readers need not round decimals exactly.
        lrs[n] = struct.unpack("<Q", struct.pack("<d", lr))[0]
        groups.setdefault(lr, []).append(p)
    result["lrs"][name] = lrs
    model.train()
    opt = torch.optim.SGD([{"params": ps, "lr": lr} for lr, ps in groups.items()], lr=SGD["lr"],
                          momentum=SGD["momentum"], weight_decay=SGD["weight_decay"], foreach=False)
    losses = []
    for k in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[k]), y[k])
        loss.backward()
        opt.step()
        losses.append(loss.detach().clone())
    losses_out[name] = torch.stack(losses)
    save_file(state_dict(model), os.path.join(out, f"{name}_final.safetensors"))

save_file(losses_out, os.path.join(out, "losses.safetensors"))
with open(os.path.join(out, "layer_decay_reference.json"), "w") as f:
    json.dump(result, f)
