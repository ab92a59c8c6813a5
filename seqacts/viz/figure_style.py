"""What every seqacts figure shares: the pyplot backend choice, layout, fonts, group colours.

Colours of a group come from :func:`group_colors` on the whole dataset's labels, so a group
keeps its colour in every figure of a report, also when a figure shows only some groups.
No text is set below :data:`SMALL` points.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "BOOL_COLORS",
    "CYCLE",
    "SMALL",
    "group_colors",
    "group_name",
    "label",
    "pyplot",
    "subplots",
    "time_axis",
]

#: Colours of boolean groups: normal (False) and anomalous (True).
BOOL_COLORS = {False: "#4C72B0", True: "#C44E52"}
#: Colours of categorical groups in order; the baseline group takes the first (blue).
CYCLE = ("#4C72B0", "#C44E52", "#55A868", "#8172B2", "#CCB974", "#64B5CD", "#8C8C8C")
#: The smallest font size (points) of any text in a figure: legends, tick labels, notes.
SMALL = 9.0


def pyplot() -> Any:
    """``matplotlib.pyplot``, selecting Agg first when no backend was chosen."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        if matplotlib.rcParams._get_backend_or_none() is None:  # type: ignore[attr-defined]
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subplots(nrows: int, ncols: int = 1, **kwargs: Any) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with a 2-D array of axes."""
    return pyplot().subplots(nrows, ncols, squeeze=False, layout="constrained", **kwargs)


def label(da: xr.DataArray | xr.Variable, default: str) -> str:
    """``long_name [units]`` of a variable, or ``default``."""
    name, units = da.attrs.get("long_name", default), da.attrs.get("units")
    return f"{name} [{units}]" if units else str(name)


def time_axis(ax: Axes, ds: xr.Dataset | xr.DataArray) -> None:
    """Label the x axis from the ``time`` coordinate: dates rotated, integers as integers."""
    dtype = ds["time"].dtype if "time" in ds.coords else np.dtype(int)
    ax.set_xlabel(label(ds["time"], "time") if "time" in ds.coords else "time")
    if np.issubdtype(dtype, np.datetime64):
        ax.tick_params(axis="x", labelrotation=25)
    elif np.issubdtype(dtype, np.integer):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def group_colors(labels: xr.DataArray, baseline: Any = None) -> dict[Any, str]:
    """A colour per group label of the whole dataset.

    Booleans: blue ``False``, red ``True``. Categories: the baseline (default ``"normal"`` when
    that is a label, else none) blue, the others the next colours in sorted order.
    """
    levels = sorted(set(pd.Series(labels.values).dropna().tolist()), key=lambda v: (str(type(v)), v))
    if set(levels) <= {False, True}:
        return {lv: BOOL_COLORS[bool(lv)] for lv in levels}
    if baseline is None and "normal" in levels:
        baseline = "normal"
    if baseline in levels:
        levels = [baseline] + [lv for lv in levels if lv != baseline]
    return {lv: CYCLE[i % len(CYCLE)] for i, lv in enumerate(levels)}


def group_name(labels: xr.DataArray, level: Any) -> str:
    """``is_anomaly=True``, ``anomaly=spike``: a label as a legend entry."""
    return f"{labels.name or 'group'}={level}"
