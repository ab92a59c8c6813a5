"""NumPy arrays given as a model's inputs, converted to tensors the way the command line does.

``seqacts.extract(model, x)`` with ``x`` a NumPy array runs ``model(torch.from_numpy(x))``
with floating arrays (float64 too) converted to the dtype of the model's parameters
(:func:`model_float`, float32 for most models), exactly as ``seqacts extract --input x.npy``
does; integer and boolean arrays (token ids, masks) keep their dtype. Arrays inside a tuple,
list or dict argument are converted too (one level deep). An array of Python objects is
refused with the fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ArgumentTypeError

__all__ = ["model_float", "numpy_to_tensors"]


def model_float(model: nn.Module) -> torch.dtype:
    """The dtype of ``model``'s first floating parameter (float32 for a model without one)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _convert(value: Any, dtype: torch.dtype, depth: int = 0) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiub":
            raise ArgumentTypeError(
                f"inputs: a NumPy array of dtype {value.dtype} is no model input; pass numbers, "
                "e.g. torch.from_numpy(x.astype('float32'))"
            )
        t = torch.from_numpy(np.ascontiguousarray(value))
        return t.to(dtype) if t.is_floating_point() else t
    if depth == 0 and isinstance(value, (tuple, list)):
        return type(value)(_convert(v, dtype, 1) for v in value)
    if depth == 0 and isinstance(value, dict):
        return {k: _convert(v, dtype, 1) for k, v in value.items()}
    return value


def numpy_to_tensors(model: nn.Module, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with every NumPy array converted to a tensor (see the module)."""
    found = any(isinstance(v, (np.ndarray, tuple, list, dict)) for v in (*args, *kwargs.values()))
    if not found:
        return args, kwargs
    dtype = model_float(model)
    return (tuple(_convert(a, dtype) for a in args),
            {k: _convert(v, dtype) for k, v in kwargs.items()})  # fmt: skip
