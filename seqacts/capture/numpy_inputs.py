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


def _has_array(value: Any) -> bool:
    """Whether ``value`` is an array, or a plain tuple, list or dict holding one."""
    if type(value) in (tuple, list):
        return any(isinstance(v, np.ndarray) for v in value)
    if type(value) is dict:
        return any(isinstance(v, np.ndarray) for v in value.values())
    return isinstance(value, np.ndarray)


def _convert(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiub":
            raise ArgumentTypeError(
                f"inputs: a NumPy array of dtype {value.dtype} is no model input; pass numbers, "
                "e.g. torch.from_numpy(x.astype('float32'))"
            )
        t = torch.from_numpy(np.ascontiguousarray(value))
        return t.to(dtype) if t.is_floating_point() else t
    # Only plain containers holding an array are rebuilt: a PackedSequence or another tuple
    # subclass, and any container without arrays, reaches the model as it was given.
    if not _has_array(value):
        return value
    if type(value) is dict:
        return {k: _convert(v, dtype) if isinstance(v, np.ndarray) else v
                for k, v in value.items()}
    return type(value)(_convert(v, dtype) if isinstance(v, np.ndarray) else v for v in value)


def numpy_to_tensors(model: nn.Module, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` with every NumPy array converted to a tensor (see the module)."""
    if not any(_has_array(v) for v in (*args, *kwargs.values())):
        return args, kwargs  # the arguments pass through untouched
    dtype = model_float(model)
    return (tuple(_convert(a, dtype) for a in args),
            {k: _convert(v, dtype) for k, v in kwargs.items()})  # fmt: skip
