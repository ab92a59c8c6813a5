"""Search a recording by example: windows like a selected one, and a unit's top windows.

:func:`match` is LSTMVis's select-and-match (Strobelt et al., 2018): the units "on" throughout a
selected range of steps, and every other window of the same length ranked by how many of them
are on together there. :func:`top_windows` lists the windows where one unit's mean activation is
highest. Both read one layer in blocks of whole Dask chunks along ``sample`` (a block at a time
in memory), so a recording opened lazily with :func:`seqacts.open_dataset` is searched in
bounded memory; only valid steps count (before each sample's ``length``, samples with
non-finite states left out).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from ..errors import OptionError
from .blocks import States, thresholds

__all__ = ["match", "top_windows"]

def _position(ds: xr.Dataset, sample: Hashable, what: str) -> int:
    index = ds.indexes.get("sample")
    if index is None:
        if not isinstance(sample, (int, np.integer)) or not 0 <= int(sample) < ds.sizes["sample"]:
            raise OptionError(
                f"{what}: sample={sample!r}; give a position 0..{ds.sizes['sample'] - 1}"
            )
        return int(sample)
    try:
        pos = index.get_loc(sample)
    except KeyError:
        first = ", ".join(map(str, index[:5]))
        raise OptionError(
            f"{what}: no sample {sample!r}; the sample coordinate has {len(index)} labels "
            f"({first}, ...)"
        ) from None
    if not isinstance(pos, (int, np.integer)):
        raise OptionError(
            f"{what}: sample label {sample!r} is not unique; select by a unique label"
        )
    return int(pos)


def _window_coords(
    ds: xr.Dataset, where: np.ndarray, start: np.ndarray, width: int, score: np.ndarray
) -> dict[str, tuple[str, np.ndarray]]:
    """Ranked windows' coordinates: the dataset's per-sample ones, start, stop and score."""
    out: dict[str, tuple[str, np.ndarray]] = {}
    for name, coord in ds.coords.items():
        if coord.dims == ("sample",):
            out[str(name)] = ("rank", np.asarray(coord.values)[where])
    if "sample" not in out:
        out["sample"] = ("rank", where)
    out.update(start=("rank", start), stop=("rank", start + width), score=("rank", score))
    return out


def _ranked(score: np.ndarray, sample: np.ndarray, start: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` best: highest score, then lowest sample position, then start."""
    order = np.lexsort((start, sample, -score))
    return order[:top]


def _check_top(top: int, what: str) -> None:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise OptionError(f"{what}: top must be a positive integer, got {top!r}")


def _unit_thresholds(
    st: States, threshold: float | Sequence[float] | xr.DataArray | None
) -> np.ndarray:
    if threshold is None:
        return thresholds(st)
    values = np.asarray(threshold, dtype=np.float64)
    if values.ndim == 0:
        return np.full(st.units, float(values))
    if values.shape != (st.units,):
        raise OptionError(
            f"match: threshold has shape {values.shape}; give one number or one per unit "
            f"({st.units} for layer {st.layer!r})"
        )
    return values


def _selected(st: States, units: Sequence[int] | None, on: np.ndarray) -> np.ndarray:
    if units is None:
        return on
    chosen = np.zeros(st.units, dtype=bool)
    for u in units:
        if isinstance(u, bool) or not isinstance(u, (int, np.integer)) or not 0 <= u < st.units:
            raise OptionError(
                f"match: units holds {u!r}; give unit positions 0..{st.units - 1} of layer "
                f"{st.layer!r}"
            )
        chosen[int(u)] = True
    return chosen


def match(
    ds: xr.Dataset,
    sample: Hashable,
    layer: Hashable,
    time: slice,
    *,
    units: Sequence[int] | None = None,
    threshold: float | Sequence[float] | xr.DataArray | None = None,
    top: int = 50,
    direction: str = "forward",
) -> xr.Dataset:
    """Windows where the units on throughout a selected range are on together (LSTMVis).

    A unit is *on* at a step when its ``h`` is above its threshold. The *selected* units are
    those on at every step of ``time`` in ``sample`` (or the given ``units``). Every other
    window of the same length, in every sample and within its valid steps, is scored by the
    Jaccard overlap ``|S & W| / |S | W|`` of the selected set ``S`` and the set ``W`` of units
    on throughout the window. Windows sharing no selected unit are not listed.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset with ``h``, eager or opened lazily (read one block of samples at a
        time).
    sample : hashable
        The query's label on the ``sample`` coordinate.
    layer : hashable
        A value of the ``layer`` coordinate.
    time : slice
        The query's steps by position, ``slice(a, b)`` = steps ``a`` to ``b - 1`` (the
        sample's valid steps only).
    units : sequence of int, optional
        Unit positions to use as the selected set instead of those on throughout the query.
    threshold : float or sequence of float, optional
        One value for all units or one per unit. Default: each unit's 80th percentile of
        ``h`` over the recording's valid steps (exact, as ``numpy.nanpercentile``; one extra
        read of the layer per 12 bits of the float type: 3 for float32).
    top : int, default 50
        How many windows to return.
    direction : str, default "forward"
        The direction of a bidirectional layer.

    Returns
    -------
    xarray.Dataset
        Dims ``rank`` (best first: highest ``score``, then sample position, then ``start``) and
        ``unit``. Coordinates along ``rank``: ``sample``, ``start``, ``stop`` (step positions,
        ``stop`` exclusive), ``score`` (Jaccard) and the dataset's other per-sample
        coordinates (labels). Variables: ``on`` (rank, unit), the units on throughout each
        window; ``selected`` (unit) and ``threshold`` (unit). The query window itself is left
        out. Attributes name the query.
    """
    _check_top(top, "match")
    if isinstance(sample, np.generic):
        sample = sample.item()  # shown in messages as 24, not np.int64(24)
    st = States(ds, layer, "h", direction, "match")
    pos = _position(ds, sample, "match")
    if not isinstance(time, slice) or time.step not in (None, 1):
        raise OptionError(f"match: time must be a slice(start, stop) of steps, got {time!r}")
    length = int(st.lengths[pos])
    a = 0 if time.start is None else int(time.start)
    b = length if time.stop is None else int(time.stop)
    if not 0 <= a < b <= length:
        raise OptionError(
            f"match: time=slice({time.start}, {time.stop}) is not a range of valid steps of sample "
            f"{sample!r}, which has {length} in layer {st.layer!r}; give 0 <= start < stop <= {length}"
        )
    thr = _unit_thresholds(st, threshold)
    query = np.asarray(st.data.isel(sample=pos, time=slice(a, b)).values, np.float64)
    selected = _selected(st, units, np.asarray((query > thr).all(axis=0)))
    if not selected.any():
        raise OptionError(
            f"match: no unit of layer {st.layer!r} stays above its threshold throughout steps "
            f"{a}..{b - 1} of sample {sample!r}; pass units=[...] or a lower threshold="
        )
    width = b - a
    best = _scan_matches(st, thr, selected, width, (pos, a), top)
    score, where, start, on = best
    coords = {
        **_window_coords(ds, where, start, width, score),
        "unit": st.data["unit"].values if "unit" in st.data.coords else np.arange(st.units),
    }
    out = xr.Dataset(
        {"on": (("rank", "unit"), on), "selected": ("unit", selected), "threshold": ("unit", thr)},
        coords=coords,
    )
    out.attrs = {"layer": st.layer, "direction": direction, "query_sample": str(sample),
                 "query_start": a, "query_stop": b}  # fmt: skip
    return out


def _scan_matches(
    st: States, thr: np.ndarray, selected: np.ndarray, width: int, query: tuple[int, int], top: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    keep_score = np.zeros(0)
    keep_sample = np.zeros(0, dtype=np.int64)
    keep_start = np.zeros(0, dtype=np.int64)
    keep_on = np.zeros((0, st.units), dtype=bool)
    n_sel = int(selected.sum())
    for first, values in st.blocks():
        if values.shape[1] < width:
            continue
        with np.errstate(invalid="ignore"):
            on = values > thr
        cs = np.zeros((on.shape[0], on.shape[1] + 1, on.shape[2]), dtype=np.int32)
        np.cumsum(on, axis=1, out=cs[:, 1:])
        through = (cs[:, width:] - cs[:, :-width]) == width  # (sample, start, unit)
        shared = through[..., selected].sum(-1)
        union = through.sum(-1) + n_sel - shared
        score = shared / union
        starts = np.arange(through.shape[1])
        ok = (starts[None, :] + width <= st.lengths[first : first + len(values), None]) & (
            shared > 0
        )
        qs, qa = query
        if first <= qs < first + len(values):
            ok[qs - first, qa] = False
        rows, cols = np.nonzero(ok)
        keep_score = np.concatenate([keep_score, score[rows, cols]])
        keep_sample = np.concatenate([keep_sample, rows + first])
        keep_start = np.concatenate([keep_start, cols])
        keep_on = np.concatenate([keep_on, through[rows, cols]])
        best = _ranked(keep_score, keep_sample, keep_start, top)
        keep_score, keep_sample = keep_score[best], keep_sample[best]
        keep_start, keep_on = keep_start[best], keep_on[best]
    return keep_score, keep_sample, keep_start, keep_on


def top_windows(
    ds: xr.Dataset,
    layer: Hashable,
    unit: int,
    *,
    width: int = 8,
    top: int = 20,
    var: str = "h",
    direction: str = "forward",
) -> xr.Dataset:
    """The windows where one unit's mean activation is highest, non-overlapping within a sample.

    Every window of ``width`` valid steps in every sample is scored by the unit's mean value of
    ``var`` over it; the best is taken, then the next best that does not overlap a window
    already taken from the same sample, and so on (windows of different samples never
    conflict).

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset, eager or opened lazily (read one block of samples at a time).
    layer : hashable
        A value of the ``layer`` coordinate.
    unit : int
        The unit's position in the layer.
    width : int, default 8
        Window length in steps.
    top : int, default 20
        How many windows to return.
    var : str, default "h"
        Any per-step, per-unit variable: ``"h"``, ``"c"``, a gate, ``"grad_h"``.
    direction : str, default "forward"
        The direction of a bidirectional layer.

    Returns
    -------
    xarray.Dataset
        Dims ``rank`` (best first: highest ``score``, then sample position, then ``start``) and
        ``step`` (0..width-1). Coordinates along ``rank``: ``sample``, ``start``, ``stop``
        (``stop`` exclusive), ``score`` (the window's mean, float64) and the dataset's other
        per-sample coordinates. Variable ``values`` (rank, step): the unit's ``var`` over
        each window.
    """
    _check_top(top, "top_windows")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise OptionError(f"top_windows: width must be a positive integer, got {width!r}")
    st = States(ds, layer, var, direction, "top_windows")
    if (
        isinstance(unit, bool)
        or not isinstance(unit, (int, np.integer))
        or not 0 <= unit < st.units
    ):
        raise OptionError(
            f"top_windows: unit={unit!r}; layer {st.layer!r} has units 0..{st.units - 1}"
        )
    score = np.zeros(0)
    where = np.zeros(0, dtype=np.int64)
    start = np.zeros(0, dtype=np.int64)
    values = np.zeros((0, width))
    for first, block in st.blocks(unit=int(unit)):
        if block.shape[1] < width:
            continue
        x = block.astype(np.float64)
        windows = np.lib.stride_tricks.sliding_window_view(x, width, axis=1)
        means = windows.mean(axis=-1)  # NaN wherever a window reaches past the length
        for row in range(len(x)):
            picked = _greedy(means[row], width, top)
            score = np.concatenate([score, means[row, picked]])
            where = np.concatenate([where, np.full(len(picked), first + row)])
            start = np.concatenate([start, picked])
            values = np.concatenate([values, windows[row, picked]])
        best = _ranked(score, where, start, top)
        score, where, start, values = score[best], where[best], start[best], values[best]
    coords = _window_coords(ds, where, start, width, score)
    out = xr.Dataset({"values": (("rank", "step"), values)}, coords=coords)
    out.attrs = {"layer": st.layer, "unit": int(unit), "var": var, "direction": direction,
                 "width": int(width)}  # fmt: skip
    return out


def _greedy(means: np.ndarray, width: int, top: int) -> np.ndarray:
    """Starts of one sample's best non-overlapping windows, best first (NaN windows skipped)."""
    starts = np.flatnonzero(~np.isnan(means))
    order = starts[np.lexsort((starts, -means[starts]))]
    taken = np.zeros(len(means), dtype=bool)  # steps covered by a window taken
    picked: list[int] = []
    for s in order:
        if not taken[s : s + width].any():
            picked.append(int(s))
            taken[s : s + width] = True
            if len(picked) == top:
                break
    return np.asarray(picked, dtype=np.int64)
