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
    from matplotlib.axes import Axes
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
        Rows of a :func:`seqacts.compare` result (their ``layer``, ``direction`` and
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
    start = None
    if align is not None:
        mask = step_mask(ds, align).values.astype(bool)
        start = onsets(mask, np.isin(labels.values, [lv for lv in levels if lv != baseline]))
    fig, axes = subplots(len(rows), 1, sharex=True, figsize=(9, 1.3 + 1.8 * len(rows)))
    x = np.arange(-(n_t - 1), n_t) if align is not None else ds["time"].values
    keep = np.zeros(x.size, dtype=bool)
    for ax, (la, d, u) in zip(axes[:, 0], rows, strict=True):
        values = _unit_values(ds, var, la, d, u)
        if start is not None:
            values = _shifted(values, start)
        for level in levels:
            name = f"{group_name(labels, level)} (n={int(np.sum(labels.values == level))})"
            keep |= _band(ax, x, values[labels.values == level], colors.get(level, "0.4"), name,
                          (low, high))  # fmt: skip
        suffix = f" {d}" if d != "forward" else ""
        ax.set_ylabel(f"{la}{suffix}\nunit {u}", fontsize=SMALL + 1)
    _x_axis(axes, ds, x, keep, align)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right upper",
               fontsize=SMALL)  # fmt: skip
    title = f"{label(ds[var], var)}: group mean and {low:g}-{high:g}th percentile band"
    axes[0, 0].set_title(title, loc="left", fontsize="medium")
    return fig


def _unit_values(ds: xr.Dataset, var: str, layer: str, direction: str, unit: int) -> np.ndarray:
    """One unit's valid values of ``var``, (sample, time), NaN past each sample's length."""
    da = analysis.masked(ds.sel(layer=[layer]), var).sel(layer=layer, unit=unit)
    da = da.sel(direction=direction) if "direction" in da.dims else da
    return analysis.computed(da.transpose("sample", "time")).values


def _shifted(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Rows moved so that step ``start[s]`` of sample ``s`` lands at column ``n_t - 1`` (x = 0);
    rows without an onset (``start < 0``) are all NaN."""
    n_t = values.shape[1]
    out = np.full((values.shape[0], 2 * n_t - 1), np.nan)
    for s in np.flatnonzero(start >= 0):
        out[s, n_t - 1 - start[s] : 2 * n_t - 1 - start[s]] = values[s]
    return out


def _band(
    ax: Axes, x: np.ndarray, part: np.ndarray, color: str, name: str, pct: tuple[float, float]
) -> np.ndarray:
    """Draw one group's mean and percentile band; returns the steps with enough samples."""
    enough = np.sum(np.isfinite(part), axis=0) >= max(2, part.shape[0] // 4)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mid = np.where(enough, np.nanmean(part, axis=0), np.nan)
        lo, hi = np.nanpercentile(np.where(enough, part, 0.0), list(pct), axis=0)
    ax.plot(x, mid, color=color, lw=1.6, label=name)
    ax.fill_between(x, np.where(enough, lo, np.nan), np.where(enough, hi, np.nan),
                    color=color, alpha=0.22, lw=0)  # fmt: skip
    return enough


def _x_axis(
    axes: np.ndarray, ds: xr.Dataset, x: np.ndarray, keep: np.ndarray, align: Any
) -> None:
    """Time axis, or steps since the onset with a line at 0, limited to the steps drawn."""
    if align is None:
        time_axis(axes[-1, 0], ds)
        return
    for ax in axes[:, 0]:
        ax.axvline(0, color="0.3", lw=1, ls="--")
    if keep.any():
        axes[-1, 0].set_xlim(x[keep].min(), x[keep].max())
    axes[-1, 0].set_xlabel(f"steps since the first {mask_name(align)} step")
