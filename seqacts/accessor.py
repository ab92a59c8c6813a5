"""The ``ds.seqacts`` accessor: one-line delegates to the plain functions that do the work.

Importing this module registers the accessor on every ``xarray.Dataset``. Each method is made
from its function by :func:`seqacts.signatures.delegate`, so it has the function's docstring and signature (less
the dataset): ``help(ds.seqacts.compare)`` is ``help(seqacts.compare)``, and defaults such as
saturation's ``low``/``high`` are declared once, on the function. The plot methods come from
:mod:`seqacts.viz.plots` the first time ``ds.seqacts.plot`` is used (matplotlib loads then).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import xarray as xr

from .analysis import core
from .analysis.compare import compare, distance, final_state
from .analysis.step_distance import step_distance
from .analysis.summary import summary, summary_table
from .analysis.windows import match, top_windows
from .signatures import delegate

__all__ = ["PLOTS", "PlotAccessor", "SeqactsAccessor"]

#: Plot functions offered as ``ds.seqacts.plot.<name>``, by the module that defines them.
PLOTS: dict[str, str] = {
    "heatmap": "seqacts.viz.plots",
    "traces": "seqacts.viz.plots",
    "bands": "seqacts.viz.plots_time",
    "saturation": "seqacts.viz.plots",
    "compare": "seqacts.viz.plots",
    "distance": "seqacts.viz.plots",
}


@xr.register_dataset_accessor("seqacts")
class SeqactsAccessor:
    """Analyses of a seqacts dataset: ``ds.seqacts.<method>``; plots under ``ds.seqacts.plot``.

    Each method is ``seqacts.<function>(ds, ...)`` with the same parameters and docstring.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    @property
    def plot(self) -> PlotAccessor:
        """Figures: ``heatmap``, ``traces``, ``bands``, ``saturation``, ``compare``, ``distance``."""
        return PlotAccessor(self._ds)

    layer = delegate(core.layer)
    masked = delegate(core.masked)
    saturation = delegate(core.saturation)
    dead_units = delegate(core.dead_units)
    step_change = delegate(core.step_change)
    summary = delegate(summary)
    summary_table = delegate(summary_table)
    final_state = delegate(final_state)
    compare = delegate(compare)
    distance = delegate(distance)
    step_distance = delegate(step_distance)
    match = delegate(match)
    top_windows = delegate(top_windows)


class PlotAccessor:
    """``ds.seqacts.plot.<name>``: each returns a matplotlib Figure and never calls ``show()``.

    The methods are the functions of :mod:`seqacts.viz.plots` (see :data:`PLOTS`), with their
    signatures and docstrings; they are attached on first use so that importing seqacts does
    not import matplotlib.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def __getattr__(self, name: str) -> Any:
        if name in PLOTS and name not in PlotAccessor.__dict__:
            _attach_plots()
            return getattr(self, name)
        raise AttributeError(f"ds.seqacts.plot has no {name!r}; plots: {', '.join(PLOTS)}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(PLOTS))


@functools.cache
def _attach_plots() -> None:
    for name, module in PLOTS.items():
        setattr(PlotAccessor, name, delegate(getattr(importlib.import_module(module), name)))
