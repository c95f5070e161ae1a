"""PyTorch training reference for worker/tests/train_parity.rs.

For each model: a torchvision model (random init; BatchNorm weights, biases and
running statistics randomised too), saved as MODEL_init.safetensors, and fixed
random batches (no augmentation), saved as MODEL_batches.safetensors. Then,
for SGD with momentum and for AdamW, STEPS training steps from that same
initial state in train mode (BatchNorm on batch statistics, running statistics
updated; dropout drawn from torch's CPU generator, seeded just before the first
step): the loss of every step goes to train_reference.json and the final
state_dict (parameters and BatchNorm running statistics) to
MODEL_OPT_final.safetensors.

Two parameter groups as the worker makes them: the backbone at lr × 0.1, the
head (`fc` / `classifier`) at lr. torch.optim with foreach=False (its code path
for CPU tensors).

usage: train_reference.py OUT_DIR THREADS
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torch_models import randomise_batchnorm

out, threads = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
torch.set_num_threads(threads)

CLASSES = 5
BATCH = 4
STEPS = 20
DROPOUT_SEED = 1234
BACKBONE_LR_SCALE = 0.1
OPTIMIZERS = {
    "sgd": {"lr": 0.001, "momentum": 0.9, "weight_decay": 5e-4},
    "adamw": {"lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05},
}
# name -> image size, head prefix, head replacement (None: torchvision's own).
MODELS = {
    # torchvision's ResNet head: one Linear(512, CLASSES) named fc.
    "resnet18": (32, "fc", None),
    # The worker's MLP head {hidden = [64], dropout = 0.5}: classifier.0 Linear,
    # .1 ReLU, .2 Dropout, .3 Linear; exercises dropout in training.
    "vgg16_bn": (32, "classifier", lambda: torch.nn.Sequential(
        torch.nn.Linear(512 * 7 * 7, 64), torch.nn.ReLU(True), torch.nn.Dropout(0.5), torch.nn.Linear(64, CLASSES))),
}


def state_dict(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


result = {"classes": CLASSES, "batch": BATCH, "steps": STEPS, "dropout_seed": DROPOUT_SEED, "backbone_lr_scale": BACKBONE_LR_SCALE,
          "optimizers": OPTIMIZERS, "losses": {}}
loss_tensors = {}
for mi, (name, (size, prefix, head)) in enumerate(MODELS.items()):
    torch.manual_seed(100 + mi)
    model = getattr(torchvision.models, name)(weights=None, num_classes=CLASSES)
    if head is not None:
        model.classifier = head()
    randomise_batchnorm(model)
    init = state_dict(model)
    save_file(init, os.path.join(out, f"{name}_init.safetensors"))
    x = torch.randn(STEPS, BATCH, 3, size, size)
    y = torch.randint(0, CLASSES, (STEPS, BATCH))
    save_file({"x": x, "y": y}, os.path.join(out, f"{name}_batches.safetensors"))
    result["losses"][name] = {}
    for opt_name, h in OPTIMIZERS.items():
        model.load_state_dict(init, strict=False)
        model.train()
        backbone = [p for n, p in model.named_parameters() if not n.startswith(prefix + ".")]
        head_params = [p for n, p in model.named_parameters() if n.startswith(prefix + ".")]
        groups = [{"params": backbone, "lr": h["lr"] * BACKBONE_LR_SCALE}, {"params": head_params, "lr": h["lr"]}]
        if opt_name == "sgd":
            opt = torch.optim.SGD(groups, lr=h["lr"], momentum=h["momentum"], weight_decay=h["weight_decay"], foreach=False)
        else:
            opt = torch.optim.AdamW(groups, lr=h["lr"], betas=tuple(h["betas"]), eps=h["eps"], weight_decay=h["weight_decay"], foreach=False)
        torch.manual_seed(DROPOUT_SEED)
        losses = []
        for k in range(STEPS):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[k]), y[k])
            loss.backward()
            opt.step()
            losses.append(loss.detach().clone())
        result["losses"][name][opt_name] = [v.item() for v in losses]
        loss_tensors[f"{name}.{opt_name}"] = torch.stack(losses)
        save_file(state_dict(model), os.path.join(out, f"{name}_{opt_name}_final.safetensors"))

save_file(loss_tensors, os.path.join(out, "losses.safetensors"))
with open(os.path.join(out, "train_reference.json"), "w") as f:
    json.dump(result, f)
