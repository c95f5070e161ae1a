"""PyTorch training-step reference for the newer backbones
(worker/tests/it/train_parity.rs, `newer_backbones_train_like_pytorch`).

For each model: a torchvision model at IMAGE px (ViT built for that size),
parameters randomised as for the logit parity (torch_models.randomise_for_parity),
dropout and stochastic depth off (p = 0), saved as MODEL_init.safetensors with
a fixed random batch (MODEL_batches.safetensors: STEPS batches). Then STEPS
steps of SGD with momentum and weight decay in train mode (BatchNorm on batch
statistics, running statistics updated), two parameter groups as the worker
makes them (the backbone at lr × 0.1, the class layer at lr), torch.optim
with foreach=False. The loss of each step goes to losses.safetensors and the
final state_dict to MODEL_final.safetensors.

usage: train_step_reference.py OUT_DIR THREADS MODEL...
"""
import json
import os
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
BACKBONE_LR_SCALE = 0.1
SGD = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
HEAD = {
    "convnext_tiny": "classifier.2",
    "convnext_small": "classifier.2",
    "efficientnet_b0": "classifier.1",
    "efficientnet_v2_s": "classifier.1",
    "mobilenet_v3_large": "classifier.3",
    "regnet_y_3_2gf": "fc",
    "vit_b_16": "heads.head",
    "swin_t": "head",
}


def state_dict(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


result = {"classes": CLASSES, "batch": BATCH, "steps": STEPS, "image": IMAGE, "backbone_lr_scale": BACKBONE_LR_SCALE,
          "sgd": SGD, "head": {}}
losses_out = {}
for mi, name in enumerate(models):
    torch.manual_seed(200 + mi)
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
    model.train()
    backbone = [p for n, p in model.named_parameters() if not n.startswith(prefix + ".")]
    head = [p for n, p in model.named_parameters() if n.startswith(prefix + ".")]
    groups = [{"params": backbone, "lr": SGD["lr"] * BACKBONE_LR_SCALE}, {"params": head, "lr": SGD["lr"]}]
    opt = torch.optim.SGD(groups, lr=SGD["lr"], momentum=SGD["momentum"], weight_decay=SGD["weight_decay"], foreach=False)
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
with open(os.path.join(out, "train_step_reference.json"), "w") as f:
    json.dump(result, f)
