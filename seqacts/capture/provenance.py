"""What a dataset or a stream file says about the model that produced it."""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from torch import nn

__all__ = ["dataset_attrs", "model_class", "model_structure", "model_weights", "seqacts_version"]


@functools.lru_cache(maxsize=1)
def seqacts_version() -> str:
    """The installed version, read once (reading package metadata costs milliseconds)."""
    try:
        return version("seqacts")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def dataset_attrs(model: Any, internals: tuple[str, ...]) -> dict[str, str]:
    """The global attributes of a recorded dataset: versions, the model, the internals."""
    return {
        "seqacts_version": seqacts_version(),
        "torch_version": torch.__version__,
        "model_class": model_class(model),
        "model_structure": model_structure(model),
        "internals": " ".join(internals),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "Conventions": "CF-1.8",
    }


def model_class(model: object) -> str:
    """The model's class as ``module.QualifiedName``."""
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def model_structure(model: object) -> str:
    """sha1 of the parameters' names, shapes and dtypes: equal for models built alike.

    A model that is no ``nn.Module`` (another front end's) contributes what its ``weights``
    attribute lists (each with a ``name`` and ``shape``), if anything.
    """
    named: list[tuple[str, tuple[int, ...], object]]
    if isinstance(model, nn.Module):
        named = [(n, tuple(p.shape), p.dtype) for n, p in model.named_parameters()]
    else:
        named = [(getattr(w, "name", str(i)), tuple(getattr(w, "shape", ())), getattr(w, "dtype", None))
                 for i, w in enumerate(getattr(model, "weights", ()))]
    return hashlib.sha1("\n".join(f"{n}:{s}:{d}" for n, s, d in named).encode()).hexdigest()


def model_weights(model: nn.Module) -> str:
    """sha1 of every parameter and buffer (names, shapes, dtypes and values)."""
    digest = hashlib.sha1()
    for name, value in model.state_dict().items():
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
