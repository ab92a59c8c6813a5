"""Groups over time: the mean and interquartile band of selected units, per group.

Where an anomaly mask is given, every window is aligned on the first masked step (its onset),
and windows without one (the baseline) are read at the onsets of the anomalous windows in turn,
so both groups are compared at the same steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..analysis import core as analysis
from ..analysis.groups import group_labels
from ..analysis.localized import mask_name, step_mask
from ..errors import GroupError
from .figure_style import SMALL, group_colors, group_name, label, subplots, time_axis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["bands", "onsets"]


def onsets(mask: np.ndarray, members: np.ndarray) -> np.ndarray:
    """First masked step of each sample; samples without one get the members' onsets in turn.

    Returns an integer array along sample (-1 where no member has an onset to lend).
    """
    has = mask.any(axis=1)
    first = np.where(has, mask.argmax(axis=1), -1)
    lend = first[members & has]
    missing = np.flatnonzero(~has)
    if lend.size:
        first[missing] = lend[np.arange(missing.size) % lend.size]
    return first


def _unit_rows(
    units: xr.Dataset | Sequence[int], layer: str | None, direction: str
) -> list[tuple[str, str, int]]:
    if isinstance(units, xr.Dataset):
        dirs = (
            units["direction"].values
            if "direction" in units.coords
            else ["forward"] * units.sizes["rank"]
        )
        return [(str(la), str(d), int(u)) for la, d, u in zip(
            units["layer"].values, dirs, units["unit"].values, strict=True)]  # fmt: skip
    if layer is None:
        raise GroupError("bands: pass layer= with a list of unit numbers, or a compare() result")
    return [(layer, direction, int(u)) for u in units]


def bands(
    ds: xr.Dataset,
    units: xr.Dataset | Sequence[int],
    group: str | xr.DataArray | Sequence[Any],
    *,
    layer: str | None = None,
    direction: str = "forward",
    levels: Sequence[Any] | None = None,
    baseline: Any = None,
    align: str | xr.DataArray | None = None,
    var: str = "h",
    low: float = 25.0,
    high: float = 75.0,
) -> Figure:
    """Group mean and ``low``-``high`` percentile band of each unit over time, one panel per unit.

    Parameters
    ----------
    units : xarray.Dataset or list of int
        Rows of a :func:`seqacts.compare.compare` result (their ``layer``, ``direction`` and
        ``unit``), or unit numbers of ``layer`` (and ``direction``).
    group : str, xarray.DataArray or sequence
        Labels along sample; each group keeps its colour from :func:`group_colors`.
    levels : list, optional
        The groups to draw; default all.
    baseline : optional
        The baseline group (first colour, lends its steps when aligning).
    align : str or xarray.DataArray, optional
        A boolean mask over (sample, time), e.g. the anomaly mask: the x axis becomes steps
        since each window's first masked step (see :func:`onsets`).
    low, high : float
        Percentiles of the band (default the interquartile range).

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = group_labels(ds, group)
    colors = group_colors(labels, baseline)
    levels = list(colors) if levels is None else list(levels)
    rows = _unit_rows(units, layer, direction)
    n_t = ds.sizes["time"]
    start = np.zeros(ds.sizes["sample"], dtype=np.int64)
    if align is not None:
        mask = step_mask(ds, align).values.astype(bool)
        start = onsets(mask, np.isin(labels.values, [lv for lv in levels if lv != baseline]))
    fig, axes = subplots(len(rows), 1, sharex=True, figsize=(9, 1.3 + 1.8 * len(rows)))
    x = np.arange(-(n_t - 1), n_t) if align is not None else ds["time"].values
    keep = np.zeros(x.size, dtype=bool)
    for ax, (la, d, u) in zip(axes[:, 0], rows, strict=True):
        da = analysis.masked(ds.sel(layer=[la]), var).sel(layer=la, unit=u)
        da = da.sel(direction=d) if "direction" in da.dims else da
        values = analysis.computed(da.transpose("sample", "time")).values
        if align is not None:
            shifted = np.full((values.shape[0], x.size), np.nan)
            for s in np.flatnonzero(start >= 0):
                shifted[s, n_t - 1 - start[s] : 2 * n_t - 1 - start[s]] = values[s]
            values = shifted
        for level in levels:
            part = values[labels.values == level]
            enough = np.sum(np.isfinite(part), axis=0) >= max(2, part.shape[0] // 4)
            keep |= enough
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mid = np.where(enough, np.nanmean(part, axis=0), np.nan)
                lo, hi = np.nanpercentile(np.where(enough, part, 0.0), [low, high], axis=0)
            color = colors.get(level, "0.4")
            name = f"{group_name(labels, level)} (n={part.shape[0]})"
            ax.plot(x, mid, color=color, lw=1.6, label=name)
            ax.fill_between(x, np.where(enough, lo, np.nan), np.where(enough, hi, np.nan),
                            color=color, alpha=0.22, lw=0)  # fmt: skip
        suffix = f" {d}" if d != "forward" else ""
        ax.set_ylabel(f"{la}{suffix}\nunit {u}", fontsize=SMALL + 1)
    if align is not None:
        for ax in axes[:, 0]:
            ax.axvline(0, color="0.3", lw=1, ls="--")
        if keep.any():
            axes[-1, 0].set_xlim(x[keep].min(), x[keep].max())
        axes[-1, 0].set_xlabel(f"steps since the first {mask_name(align)} step")
    else:
        time_axis(axes[-1, 0], ds)
    axes[0, 0].legend(loc="upper left", fontsize=SMALL)
    title = f"{label(ds[var], var)}: group mean and {low:g}-{high:g}th percentile band"
    axes[0, 0].set_title(title, loc="left", fontsize="medium")
    return fig
