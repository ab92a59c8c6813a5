"""Writing records into a block's arrays: each piece at its rows and steps, NaN elsewhere.

:func:`seqacts.capture.assembly.build_block` lays a group out; these put the values in place,
copying once (or not at all, when a record's shared buffer already is the block's array).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .chains import Placement
from .specs import LayerSpec

__all__ = ["adopt", "copy_into", "end", "place_states", "place_steps"]


def copy_into(dst: np.ndarray, index: tuple[Any, ...], src: Tensor) -> None:
    """Copy a tensor (any device and float dtype) into a numpy array slot."""
    target = torch.from_numpy(dst)[index]
    if src.device.type != "cpu" or src.dtype not in (torch.float32, torch.float64):
        src = src.to("cpu", dtype=target.dtype)
    target.copy_(src)


def place_steps(slot: np.ndarray, pieces: list[tuple[Placement, Tensor]]) -> None:
    """Write (N, D, T, W) pieces at their rows and time offsets into ``slot`` (S, D, T, U).

    Only what no piece covers is set to NaN: a full-size single piece costs one copy. A piece
    with one offset per row (a chain whose rows have different lengths) is copied row by row,
    its valid steps only, so every row's valid steps stay a prefix.
    """
    covered = len(pieces) == 1 and tuple(pieces[0][1].shape) == slot.shape and (
        pieces[0][0].row == 0 and isinstance(pieces[0][0].offset, int) and pieces[0][0].offset == 0)
    if not covered:
        slot.fill(np.nan)
    for place, piece in pieces:
        n, d, t, w = piece.shape
        rows, offset = place.row, place.offset
        if isinstance(offset, int):
            copy_into(slot, (slice(rows, rows + n), slice(0, d), slice(offset, offset + t), slice(0, w)),
                  piece)
            continue
        for j, length in enumerate(place.record.lengths.tolist()):
            start = int(offset[j])
            copy_into(slot, (rows + j, slice(0, d), slice(start, start + length), slice(0, w)),
                  piece[j, :, :length])


def place_states(slot: np.ndarray, pieces: list[tuple[Placement, Tensor | None]]) -> None:
    """Write (N, D, W) states at their rows into ``slot`` (S, D, U), later pieces last, NaN elsewhere."""
    present = [(p, v) for p, v in pieces if v is not None]
    if not (len(present) == 1 and tuple(present[0][1].shape) == slot.shape and present[0][0].row == 0):
        slot.fill(np.nan)
    for place, value in present:
        n, d, w = value.shape
        copy_into(slot, (slice(place.row, place.row + n), slice(0, d), slice(0, w)), value)


def adopt(
    specs: Sequence[LayerSpec],
    placed: dict[str, list[Placement]],
    name: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
) -> np.ndarray | None:
    """The buffer the records of ``name`` already fill, when it is exactly the block's array.

    That is the common case, one stack call recorded whole on the CPU: the block then costs no
    copy at all. Any other case (cells, several calls, a subset of layers, padding) is copied.
    """
    base = None
    for li, spec in enumerate(specs):
        places = placed.get(spec.label, [])
        hit = places[0].record.shared.get(name) if len(places) == 1 else None
        if hit is None or hit[1] != li or (base is not None and hit[0] is not base):
            return None
        if places[0].row != 0 or places[0].offset != 0:  # type: ignore[comparison-overlap]
            return None
        base = hit[0]
    if base is None or base.device.type != "cpu" or tuple(base.shape) != shape:
        return None
    if base.dtype != (torch.float64 if dtype == np.float64 else torch.float32):
        return None
    return base.numpy()


def end(place: Placement) -> int:
    if isinstance(place.offset, int):
        return place.offset + int(place.record.h.shape[2])
    return int((place.offset + place.record.lengths.numpy()).max())
