"""Other modules' outputs (``modules=``) as dataset variables: NaN-padded, dims named.

Each output becomes ``(sample[, <name>.call], <name>.<dim>...)``. The dims after ``sample``
are named after what they hold where the module says so (a convolution: ``channel``, then
``time`` for ``Conv1d``, ``height`` and ``width`` for ``Conv2d``), else ``dim1``, ``dim2``...
(the README's "Other modules").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from torch import nn

from ..schema import CONV_DIMS

__all__ = ["CONV_SPATIAL", "output_dims", "output_variables"]

#: Pieces of one block's outputs: name -> per ``<name>.call``, (first row or None, array).
BlockOutputs = dict[str, list[list[tuple[int | None, np.ndarray]]]]

#: Spatial dims of each convolution class's output ``(N, C, *spatial)`` (subclasses too:
#: ``LazyConv1d``...).
CONV_SPATIAL: dict[type[nn.Module], int] = {
    nn.Conv1d: 1, nn.ConvTranspose1d: 1,
    nn.Conv2d: 2, nn.ConvTranspose2d: 2,
    nn.Conv3d: 3, nn.ConvTranspose3d: 3,
}  # fmt: skip

_INDEXED = re.compile(r"\[\d+\]$")  # "<module>[i]": the i-th tensor a module returned


def output_dims(model: Any, name: str, n_dims: int) -> tuple[str, ...]:
    """The names of an output's ``n_dims`` dims after ``sample`` (without the variable prefix).

    A convolution's ``(N, C, *spatial)`` output: ``CONV_DIMS`` of its spatial rank; any other
    output (or a convolution's of another rank, e.g. unbatched): ``dim1``, ``dim2``...
    """
    path = _INDEXED.sub("", name)
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:  # no such submodule, or a model that is no torch module
        module = None
    for cls, spatial in CONV_SPATIAL.items():
        if isinstance(module, cls) and not _INDEXED.search(name) and n_dims == spatial + 1:
            return CONV_DIMS[spatial]
    return tuple(f"dim{i}" for i in range(1, n_dims + 1))


def _pad_to(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` NaN-padded (with trailing length-1 axes added) up to ``shape``."""
    a = a.reshape(a.shape + (1,) * (len(shape) - a.ndim))
    if a.shape == shape:
        return a
    out = np.full(shape, np.nan, dtype=np.result_type(a.dtype, np.float32))
    out[tuple(slice(0, a.shape[i]) for i in range(a.ndim))] = a
    return out


def _fill_slot(pieces: list[tuple[int | None, np.ndarray]], shape: tuple[int, ...]) -> np.ndarray:
    """One ``<name>.call`` of a block: its pieces at their rows, NaN elsewhere."""
    if len(pieces) == 1 and pieces[0][0] == 0:
        return _pad_to(pieces[0][1], shape)
    placed = [(row, a) for row, a in pieces if row is not None]
    out = np.full(shape, np.nan, dtype=np.result_type(np.float32, *[a.dtype for _, a in placed]))
    for row, a in placed:
        dims: tuple[int, ...] = a.shape + (1,) * (len(shape) - a.ndim)
        index = [slice(0, n) for n in dims]
        index[0] = slice(row, row + dims[0])
        out[tuple(index)] = a.reshape(dims)
    return out


def output_variables(blocks: Sequence[tuple[int, BlockOutputs]], reserved: set[str],
                     model: Any) -> dict[str, xr.DataArray]:
    """Other modules' outputs of ``blocks`` (each: its sample count, its outputs), concatenated
    along ``sample``; a name in ``reserved`` is prefixed ``module.``."""
    variables = {}
    for name in dict.fromkeys(k for _, outputs in blocks for k in outputs):
        calls = [outputs.get(name, []) for _, outputs in blocks]
        n_calls = max(len(c) for c in calls)
        arrays = [a for c in calls for slot in c for _, a in slot]
        ndim = max(a.ndim for a in arrays)
        tail = tuple(max(a.shape[i] if i < a.ndim else 1 for a in arrays) for i in range(1, ndim))
        data = np.concatenate(
            [
                np.stack(
                    [_fill_slot(slot, (n, *tail)) for slot in c]
                    + [np.full((n, *tail), np.nan)] * (n_calls - len(c)),
                    axis=1,
                )
                for (n, _), c in zip(blocks, calls, strict=True)
            ],
            axis=0,
        )
        if n_calls == 1:
            data = data[:, 0]
        var = name if name not in reserved else f"module.{name}"
        dims = ["sample", *([f"{var}.call"] if n_calls > 1 else [])]
        dims += [f"{var}.{d}" for d in output_dims(model, name, len(tail))]
        variables[var] = xr.DataArray(
            data, dims=dims, attrs={"long_name": f"output of {name}", "module": name}
        )
    return variables
