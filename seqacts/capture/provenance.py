"""What a dataset or a stream file says about the model that produced it."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

__all__ = ["model_class", "model_structure", "model_weights"]


def model_class(model: nn.Module) -> str:
    """The model's class as ``module.QualifiedName``."""
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def model_structure(model: nn.Module) -> str:
    """sha1 of the parameters' names, shapes and dtypes: equal for models built alike."""
    return hashlib.sha1(
        "\n".join(f"{n}:{tuple(p.shape)}:{p.dtype}" for n, p in model.named_parameters()).encode()
    ).hexdigest()


def model_weights(model: nn.Module) -> str:
    """sha1 of every parameter and buffer (names, shapes, dtypes and values)."""
    digest = hashlib.sha1()
    for name, value in model.state_dict().items():
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
