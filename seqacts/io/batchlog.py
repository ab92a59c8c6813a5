"""What identifies a batch: its inputs' shapes and a digest of their bytes.

A stream file logs one entry per committed batch (samples, input shapes, sha256 of the inputs).
``resume=True`` recomputes the entry of every batch it skips, without running the model, and
refuses batches that differ from the committed ones: other data, other batch sizes, another
order. Hashing reads the inputs once (sha256), a small cost beside writing their activations.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

__all__ = ["batch_entry", "difference", "is_empty"]


def _tensors(obj: Any, digest: Any, shapes: list[list[int]]) -> None:
    """Feed every tensor/array in ``obj`` (nested tuples, lists, dicts) into ``digest``."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")
        shapes.append(list(t.shape))
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        digest.update(f"{a.dtype}{a.shape}".encode())
        digest.update(a.view(np.uint8).reshape(-1) if a.size and a.dtype != object else b"")
        shapes.append(list(a.shape))
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            digest.update(str(key).encode())
            _tensors(obj[key], digest, shapes)
    elif isinstance(obj, (tuple, list)):
        digest.update(b"(")
        for item in obj:
            _tensors(item, digest, shapes)
        digest.update(b")")
    else:
        digest.update(repr(obj).encode())


def batch_entry(args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``{"shapes": [...], "digest": sha256 hex}`` of a batch's model arguments."""
    digest, shapes = hashlib.sha256(), []  # type: ignore[var-annotated]
    _tensors((args, kwargs), digest, shapes)
    return {"shapes": shapes, "digest": digest.hexdigest()}


def is_empty(args: tuple, kwargs: dict[str, Any]) -> bool:
    """Whether the batch's first tensor has no elements (0 samples)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.numel() == 0
    return False


def difference(index: int, logged: dict[str, Any], got: dict[str, Any]) -> str | None:
    """What differs between the committed batch ``index`` and this call's, or None."""
    if logged.get("digest") == got["digest"]:
        return None
    samples = f" ({logged['samples']} samples)" if "samples" in logged else ""
    if logged.get("shapes") != got["shapes"]:
        return (f"batch {index}: the committed batch had inputs of shapes {logged.get('shapes')}"
                f"{samples}, this call's has {got['shapes']}")
    return (f"batch {index}: same input shapes {got['shapes']} but other values (inputs sha256 "
            f"{str(logged.get('digest'))[:12]}... committed, {got['digest'][:12]}... now)")
