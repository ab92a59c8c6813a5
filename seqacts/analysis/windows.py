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

from collections.abc import Hashable, Iterator, Sequence

import numpy as np
import xarray as xr

from ..errors import LayerSelectionError, OptionError
from .core import CELL_WIDTH_VARS, require
from .percentile import column_percentile

__all__ = ["match", "states", "thresholds", "top_windows"]

#: A block read at once holds about this many bytes when the data is not chunked by Dask.
BLOCK_BYTES = 64 * 2**20
#: The default threshold of :func:`match`: each unit's percentile over the valid steps.
PERCENTILE = 80.0


class States:
    """One layer and direction of a per-step variable, ``(sample, time, unit)``, read in blocks.

    ``lengths`` holds each sample's number of valid steps (0 for a sample left out).
    """

    def __init__(
        self, ds: xr.Dataset, layer: Hashable, var: str, direction: str, what: str
    ) -> None:
        require(ds, var, what)
        da = ds[var]
        missing = [d for d in ("sample", "layer", "time", "unit") if d not in da.dims]
        if missing:
            raise OptionError(
                f"{what}: {var!r} has dims {da.dims}, not a per-step, per-unit variable (it "
                f"lacks {', '.join(missing)}); use 'h', 'c', a gate or 'grad_h'"
            )
        names = [str(v) for v in ds["layer"].values]
        if str(layer) not in names:
            raise LayerSelectionError(f"{what}: no layer {layer!r}; available: {', '.join(names)}")
        index = names.index(str(layer))
        sub = ds.isel(layer=index)
        da = da.isel(layer=index)
        if "direction" in da.dims:
            dirs = [str(v) for v in da["direction"].values]
            if "n_directions" in sub.coords:
                dirs = dirs[: int(sub["n_directions"])]
            if direction not in dirs:
                raise OptionError(
                    f"{what}: layer {layer!r} has no direction {direction!r}; it has "
                    f"{', '.join(dirs)}"
                )
            da = da.isel(direction=dirs.index(direction))
        width_name = "n_cell_units" if var in CELL_WIDTH_VARS else "n_units"
        if width_name in sub.coords:
            da = da.isel(unit=slice(0, int(sub[width_name])))
        n_time = da.sizes["time"]
        if "length" in sub.coords:
            lengths = np.asarray(sub["length"].values, dtype=np.int64)
            lengths = np.broadcast_to(lengths, (da.sizes["sample"],)).copy()
        else:
            lengths = np.full(da.sizes["sample"], n_time, dtype=np.int64)
        if "nonfinite" in sub.coords:
            lengths[np.asarray(sub["nonfinite"].values) > 0] = 0
        steps = int(lengths.max(initial=0))
        self.data = da.isel(time=slice(0, max(steps, 1))).transpose("sample", "time", "unit")
        self.lengths = np.minimum(lengths, self.data.sizes["time"])
        self.layer, self.var, self.direction = str(layer), var, direction
        kind = self.data.dtype
        self.dtype = np.dtype(np.float64 if kind == np.float64 else np.float32)

    @property
    def units(self) -> int:
        return int(self.data.sizes["unit"])

    def blocks(self, unit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(first sample, values)`` per block, NaN past each sample's length.

        ``values`` is ``(samples, time, unit)``, or ``(samples, time)`` for one ``unit``.
        """
        da = self.data if unit is None else self.data.isel(unit=unit)
        n = da.sizes["sample"]
        if da.chunks is not None:
            sizes = list(da.chunksizes["sample"])
        else:
            per_sample = max(1, int(np.prod([da.sizes[d] for d in da.dims if d != "sample"])))
            step = max(1, BLOCK_BYTES // (8 * per_sample))
            sizes = [min(step, n - i) for i in range(0, n, step)]
        start = 0
        for size in sizes:
            values = np.asarray(da.isel(sample=slice(start, start + size)).values, self.dtype)
            steps = np.arange(values.shape[1])
            pad = steps[None, :] >= self.lengths[start : start + size, None]
            values[pad] = np.nan
            yield start, values
            start += size


def states(ds: xr.Dataset, layer: Hashable, var: str = "h", direction: str = "forward") -> States:
    """One layer's ``var`` in one direction as :class:`States`, checked (for the viewer)."""
    return States(ds, layer, var, direction, "states")


def thresholds(st: States, q: float = PERCENTILE) -> np.ndarray:
    """Each unit's ``q``-th percentile over the valid steps (exact, numpy's "linear" rule)."""
    if not 0.0 <= q <= 100.0:
        raise OptionError(f"thresholds: q must be in [0, 100], got {q}")

    def rows() -> Iterator[np.ndarray]:
        for _, values in st.blocks():
            yield values.reshape(-1, st.units)

    return column_percentile(rows, q, st.dtype, st.units)


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
