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
