"""The ``pack="int16"`` policy in one place: which variables are packed, over what range, and
how values become int16 codes (and back, through CF ``scale_factor``/``add_offset``).

A new file packs the variables whose range is known (:data:`PACK_RANGES`: gates always,
``h``/``h_n`` only when every layer squashes its output); an existing file's packed variables
are its int16 ones, whose ranges are looked up again here, when appending or rewriting it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import xarray as xr

from ..errors import OptionError
from ..kinds import base_kind, find_kind, tanh_bounded_kinds
from ..schema import INTERNAL_RANGE

__all__ = ["PACK_FILL", "PACK_MAX", "PACK_RANGES", "pack", "pack_attrs", "packed_in",
           "ranges_to_pack", "squashes"]

#: Variables ``pack="int16"`` stores as scaled int16, with the range their values cannot leave.
#: ``h``/``h_n`` only when every recorded layer squashes its output (tanh, no projection).
PACK_RANGES: dict[str, tuple[float, float]] = {
    "h": (-1.0, 1.0),
    "h_n": (-1.0, 1.0),
    **INTERNAL_RANGE,
}
PACK_MAX = 32766  # int16 codes -32766..32766; -32767 is netCDF's default short _FillValue
PACK_FILL = np.int16(-32767)
PACK_BLOCK = 2**18  # values packed per step: a block that stays in the CPU cache

Range = tuple[float, float]


def squashes(ds: xr.Dataset, nonlinearity_of: Callable[[str], str] | None) -> bool:
    """Whether every layer's h lies in [-1, 1] (tanh outputs, no projection).

    ``nonlinearity_of(module path)`` gives a cell's nonlinearity; without it (no model) a kind
    whose range depends on its nonlinearity is not known to squash.
    """
    for kind, module, n_units, n_cell in zip(
        ds["kind"].values, ds["module"].values, ds["n_units"].values, ds["n_cell_units"].values,
        strict=True,
    ):
        spec = find_kind(str(kind))
        if spec is None or (spec.by_nonlinearity and nonlinearity_of is None):
            return False  # an unknown kind, or one whose nonlinearity is not in the dataset
        if nonlinearity_of is not None:
            kind = base_kind(str(kind), nonlinearity_of(str(module)))
        if kind not in tanh_bounded_kinds() or n_units != n_cell:
            return False
    return True


def ranges_to_pack(ds: xr.Dataset, nonlinearity_of: Callable[[str], str] | None) -> dict[str, Range]:
    """The variables of a new file for batches like ``ds`` to pack, with their ranges."""
    squash = squashes(ds, nonlinearity_of)
    packed = {n: r for n, r in PACK_RANGES.items()
              if n in ds.data_vars and (squash or n not in ("h", "h_n"))}
    if not packed:
        warnings.warn("pack='int16': no recorded variable has a known range (gates, or h of "
                      "tanh layers); storing float", stacklevel=5)
    return packed


def packed_in(variables: Iterable[tuple[Any, Any]]) -> dict[str, Range]:
    """The packed variables of an existing file, from its ``(name, stored dtype)`` pairs."""
    return {str(n): PACK_RANGES[str(n)] for n, dtype in variables if dtype == np.int16}


def pack_attrs(lo: float, hi: float, dtype: np.dtype) -> dict[str, Any]:
    """The CF attributes that decode :func:`pack`'s codes back to values of ``dtype``."""
    return {"scale_factor": dtype.type((hi - lo) / 2 / PACK_MAX),
            "add_offset": dtype.type((hi + lo) / 2)}


def pack(x: np.ndarray, name: str, lo: float, hi: float) -> np.ndarray:
    """Scale [lo, hi] onto int16 codes -32766..32766 and NaN onto the fill value."""
    scale, offset = np.float32(PACK_MAX / ((hi - lo) / 2)), np.float32((hi + lo) / 2)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.size, np.int16)
    buf = np.empty(min(PACK_BLOCK, flat.size), np.float32)
    top, bottom = -np.inf, np.inf
    for start in range(0, flat.size, PACK_BLOCK):
        q = buf[: min(PACK_BLOCK, flat.size - start)]
        np.subtract(flat[start : start + q.size], offset, out=q)
        q *= scale
        np.rint(q, out=q)
        np.nan_to_num(q, copy=False, nan=float(PACK_FILL))
        top, bottom = max(top, float(q.max())), min(bottom, float(q.min()))
        out[start : start + q.size] = q
    if top > PACK_MAX or bottom < PACK_FILL:
        raise OptionError(
            f"pack='int16': {name} has values outside [{lo}, {hi}] (e.g. a GRU given an initial "
            f"state beyond [-1, 1]); int16 packing would clip them. Use pack=None for this model"
        )
    return out.reshape(x.shape)
