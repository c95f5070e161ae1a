"""Shared by the Python reference scripts of the tests: torchvision models
whose BatchNorm layers carry non-trivial statistics and affine parameters, so
that a parity test notices when running stats or weights are dropped."""
import torch


def randomise_batchnorm(model):
    """In place: running mean ~ N(0, 0.1), running var ~ U(0.5, 2), weight ~
    U(0.5, 1.5), bias ~ N(0, 0.1) for every BatchNorm2d. Returns the model."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model


def randomise_for_parity(model):
    """In place, for the logit-parity tests: randomise_batchnorm, LayerNorm
    weight ~ U(0.5, 1.5) and bias ~ N(0, 0.1), ConvNeXt's layer_scale ~
    U(0.2, 0.6) (its 1e-6 init would hide the residual branches), and every
    other parameter that its init leaves constant (zero biases, ViT's class
    token and zero-initialised head) ~ N(0, 0.02). Returns the model."""
    randomise_batchnorm(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        norm_params = {id(p) for m in model.modules()
                       if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d)) for p in m.parameters()}
        for name, p in model.named_parameters():
            if id(p) in norm_params:
                continue
            if name.endswith("layer_scale"):
                p.uniform_(0.2, 0.6)
            elif p.numel() > 0 and bool((p == p.flatten()[0]).all()):
                p.normal_(0, 0.02)
    return model
