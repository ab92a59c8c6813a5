"""Exact per-column percentiles of data streamed in blocks, in bounded memory.

``np.nanpercentile(x, q, axis=0)`` needs all of ``x`` in memory; a recording opened lazily can
be larger than memory. :func:`column_percentile` finds the same numbers (bit for bit) by
radix selection: floats are mapped to unsigned integers that sort like them, and each pass over
the blocks counts, per column, the next 12 bits of the values that share the bits fixed so far,
until the two order statistics numpy interpolates between are known exactly. float32 data takes
3 passes, float64 6; memory is one block plus ``columns x 4096`` counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["column_percentile"]

_DIGIT = 12
_UINT: dict[np.dtype, np.dtype] = {
    np.dtype(np.float32): np.dtype(np.uint32),
    np.dtype(np.float64): np.dtype(np.uint64),
}


def _keys(x: np.ndarray, uint: np.dtype) -> np.ndarray:
    """Unsigned integers ordered as the floats ``x`` are (NaN excluded by the caller)."""
    u = x.view(uint)
    sign = uint.type(1) << uint.type(8 * uint.itemsize - 1)
    return np.where(u & sign, ~u, u | sign).astype(np.uint64)


def _floats(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    uint = _UINT[dtype]
    k = keys.astype(uint)
    sign = uint.type(1) << uint.type(8 * uint.itemsize - 1)
    return np.where(k & sign, k & ~sign, ~k).astype(uint).view(dtype)


def _digits(bits: int) -> list[tuple[int, int]]:
    """(shift, width) of each pass's digit, most significant first."""
    out = []
    left = bits
    while left > 0:
        width = min(_DIGIT, left)
        left -= width
        out.append((left, width))
    return out


def column_percentile(
    blocks: Callable[[], Iterable[np.ndarray]], q: float, dtype: np.dtype | type, columns: int
) -> np.ndarray:
    """``np.nanpercentile(np.concatenate(list(blocks())).astype(float), q, axis=0)``, streamed.

    Parameters
    ----------
    blocks : callable
        Returns a fresh iterable of 2-D arrays ``(rows, columns)`` of ``dtype`` each time it is
        called (once per pass); NaN marks a missing value.
    q : float
        The percentile, 0 to 100 (numpy's default ``"linear"`` method).
    dtype : numpy dtype
        float32 or float64, the blocks' dtype.
    columns : int
        The blocks' number of columns.

    Returns
    -------
    numpy.ndarray
        One float64 value per column (interpolated in float64 between the two order
        statistics, which are values of the data); NaN for a column without values.
    """
    dtype = np.dtype(dtype)
    uint = _UINT[dtype]
    digits = _digits(8 * uint.itemsize)
    prefix: np.ndarray | None = None  # (2, columns): the bits fixed so far of both ranks
    rank: np.ndarray | None = None  # (2, columns): rank left within the prefix's values
    n = np.zeros(0, dtype=np.int64)
    for step, (shift, width) in enumerate(digits):
        counts = _count(blocks(), uint, prefix, shift, width, columns)
        if step == 0:
            n = counts[0].sum(axis=1)
            virtual = (n - 1) * (q / 100.0)
            lower = np.clip(np.floor(virtual), 0, np.maximum(n - 1, 0)).astype(np.int64)
            upper = np.minimum(lower + 1, np.maximum(n - 1, 0))
            rank = np.stack([lower, upper])
            prefix = np.zeros_like(rank, dtype=np.uint64)
            gamma = virtual - np.floor(virtual)
        assert rank is not None and prefix is not None
        cum = np.cumsum(counts, axis=2)
        digit = np.argmax(cum > rank[..., None], axis=2)
        before = np.take_along_axis(cum, digit[..., None], axis=2)[..., 0]
        before -= np.take_along_axis(counts, digit[..., None], axis=2)[..., 0]
        rank = rank - before
        prefix = (prefix << np.uint64(width)) | digit.astype(np.uint64)
    assert prefix is not None
    values = _floats(prefix, dtype).astype(np.float64)
    out = np.full(n.shape, np.nan)
    for j in np.flatnonzero(n > 0):
        out[j] = _lerp(values[0, j], values[1, j], float(gamma[j]), int(n[j]), q)
    return out


def _lerp(a: np.float64, b: np.float64, t: float, n: int, q: float) -> np.float64:
    """numpy's ``_lerp`` for one column, with its clipping of the virtual index."""
    virtual = (n - 1) * (q / 100.0)
    if virtual < 0:
        return a
    if virtual >= n - 1:
        return b if n > 1 else a
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _count(
    blocks: Iterable[np.ndarray],
    uint: np.dtype,
    prefix: np.ndarray | None,
    shift: int,
    width: int,
    cols: int,
) -> np.ndarray:
    """Per rank and column, how many values with the given prefix have each next digit."""
    bins = 1 << width
    counts = np.zeros((2, cols, bins), dtype=np.int64)
    for block in blocks:
        ok = ~np.isnan(block)
        col = np.broadcast_to(np.arange(cols), block.shape)[ok]
        keys = _keys(np.ascontiguousarray(block), uint)[ok]
        digit = ((keys >> np.uint64(shift)) & np.uint64(bins - 1)).astype(np.int64)
        for j in range(2):
            if prefix is None:
                sel = slice(None)
            else:
                sel = (keys >> np.uint64(shift + width)) == prefix[j][col]
            counts[j] += np.bincount(col[sel] * bins + digit[sel], minlength=cols * bins).reshape(
                cols, bins
            )
            if prefix is None:
                break
    if prefix is None:
        counts[1] = counts[0]
    return counts
