"""torch.optim reference data for worker/tests/optim_parity.rs.

For every case (SGD plain / momentum / Nesterov, Adam with and without L2
weight decay, AdamW) the same initial parameters and the same gradients go
through torch.optim (foreach=False: the single-tensor code path, which is also
what torch uses for CPU tensors), and every parameter and every state tensor is
saved after every step.

Two parameter groups with their own lr; every lr halves from step 3 on (a
schedule); parameter "d" has no gradient at step 1 (torch skips it: no decay,
no momentum, its step count stays behind) and "e" never has one (no state).

usage: optim_reference.py OUT_DIR
writes OUT_DIR/optim_reference.safetensors and OUT_DIR/optim_cases.json
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)

# name -> (shape, group). "b" is long enough for the vectorised kernels, "c" has a ragged tail.
PARAMS = {"a": ([3, 4], 0), "b": ([1000], 0), "c": ([37], 1), "d": ([2, 3, 3, 3], 1), "e": ([5], 1)}
STEPS = 6
HALVE_LR_FROM = 3


def has_grad(name, step):
    return name != "e" and not (name == "d" and step == 1)


CASES = [
    {"name": "sgd", "optimizer": "sgd", "lrs": [0.1, 0.03], "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    {"name": "sgd_momentum_wd", "optimizer": "sgd", "lrs": [0.1, 0.01], "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4},
    {"name": "sgd_nesterov_wd", "optimizer": "sgd", "lrs": [0.05, 0.2], "momentum": 0.85, "nesterov": True, "weight_decay": 5e-4},
    {"name": "adam", "optimizer": "adam", "lrs": [1e-3, 3e-3], "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
    {"name": "adam_l2", "optimizer": "adam", "lrs": [2e-3, 1e-2], "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 1e-2},
    {"name": "adamw", "optimizer": "adamw", "lrs": [1e-3, 1e-2], "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.05},
    {"name": "adamw_betas", "optimizer": "adamw", "lrs": [5e-3, 5e-4], "betas": [0.85, 0.995], "eps": 1e-7, "weight_decay": 0.3},
]

tensors = {}
init = {n: torch.randn(shape) for n, (shape, _) in PARAMS.items()}
grads = {}
for k in range(STEPS):
    for n, (shape, _) in PARAMS.items():
        if has_grad(n, k):
            # Gradients of varied magnitude, so that the moments are not all alike.
            grads[(k, n)] = torch.randn(shape) * (10.0 ** (k % 3 - 1))
for n, t in init.items():
    tensors[f"init.{n}"] = t
for (k, n), g in grads.items():
    tensors[f"grad.{k}.{n}"] = g

for case in CASES:
    params = {n: init[n].clone().requires_grad_(True) for n in PARAMS}
    groups = [{"params": [params[n] for n, (_, g) in PARAMS.items() if g == i], "lr": lr} for i, lr in enumerate(case["lrs"])]
    wd = case["weight_decay"]
    if case["optimizer"] == "sgd":
        opt = torch.optim.SGD(groups, lr=case["lrs"][0], momentum=case["momentum"], dampening=0.0, nesterov=case["nesterov"], weight_decay=wd, foreach=False)
    elif case["optimizer"] == "adam":
        opt = torch.optim.Adam(groups, lr=case["lrs"][0], betas=tuple(case["betas"]), eps=case["eps"], weight_decay=wd, foreach=False)
    else:
        opt = torch.optim.AdamW(groups, lr=case["lrs"][0], betas=tuple(case["betas"]), eps=case["eps"], weight_decay=wd, foreach=False)
    for k in range(STEPS):
        if k == HALVE_LR_FROM:
            for group, lr in zip(opt.param_groups, case["lrs"]):
                group["lr"] = lr * 0.5
        opt.zero_grad(set_to_none=True)
        for n, p in params.items():
            if has_grad(n, k):
                p.grad = grads[(k, n)].clone()
        opt.step()
        for n, p in params.items():
            tensors[f"{case['name']}.{k}.param.{n}"] = p.detach().clone()
            for slot, v in opt.state[p].items():
                if v is None:
                    continue
                v = v.detach().clone()
                if slot == "step":
                    v = v.reshape([1])
                tensors[f"{case['name']}.{k}.state.{n}.{slot}"] = v

save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "optim_reference.safetensors"))
spec = {"steps": STEPS, "halve_lr_from": HALVE_LR_FROM, "params": {n: {"shape": s, "group": g} for n, (s, g) in PARAMS.items()}, "cases": CASES}
with open(os.path.join(out, "optim_cases.json"), "w") as f:
    json.dump(spec, f)
