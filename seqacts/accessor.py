"""The ``ds.seqacts`` accessor: one-line delegates to the plain functions that do the work.

Importing this module registers the accessor on every ``xarray.Dataset``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import xarray as xr

from .analysis import core as analysis
from .analysis.compare import compare, distance, final_state
from .analysis.step_distance import step_distance
from .analysis.summary import summary, summary_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SeqactsAccessor", "PlotAccessor"]


P = ParamSpec("P")
R = TypeVar("R")


def _delegate(func: Callable[Concatenate[xr.Dataset, P], R]) -> Callable[Concatenate[Any, P], R]:
    """A method calling ``func(ds, ...)``, with ``func``'s signature and docstring."""

    @functools.wraps(func)
    def method(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        return func(self._ds, *args, **kwargs)

    return method


@xr.register_dataset_accessor("seqacts")
class SeqactsAccessor:
    """Analyses of a seqacts dataset: ``ds.seqacts.<method>``; plots under ``ds.seqacts.plot``.

    Each method is the plain function of the same name called with this dataset first.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    @property
    def plot(self) -> PlotAccessor:
        """Figures: ``heatmap``, ``traces``, ``bands``, ``saturation``, ``compare``, ``distance``."""
        return PlotAccessor(self._ds)

    def masked(self, name: str = "h") -> xr.DataArray:
        """A variable with padding set to NaN; see :func:`seqacts.analysis.masked`."""
        return analysis.masked(self._ds, name)

    layer = _delegate(analysis.layer)
    saturation = _delegate(analysis.saturation)
    dead_units = _delegate(analysis.dead_units)
    summary = _delegate(summary)
    summary_table = _delegate(summary_table)
    step_change = _delegate(analysis.step_change)
    final_state = _delegate(final_state)
    compare = _delegate(compare)
    distance = _delegate(distance)
    step_distance = _delegate(step_distance)


class PlotAccessor:
    """``ds.seqacts.plot.<name>``: each returns a matplotlib Figure and never calls ``show()``."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def heatmap(self, sample: Any = None, layer: str | None = None, **kwargs: Any) -> Figure:
        """Units x time of one sample and layer; see :func:`seqacts.plots.heatmap`."""
        from .viz import plots

        return plots.heatmap(self._ds, sample=sample, layer=layer, **kwargs)

    def traces(self, units: Any = None, layer: str | None = None, **kwargs: Any) -> Figure:
        """Selected units over time, samples overlaid; see :func:`seqacts.plots.traces`."""
        from .viz import plots

        return plots.traces(self._ds, units=units, layer=layer, **kwargs)

    def bands(self, units: Any, group: Any, **kwargs: Any) -> Figure:
        """Group mean and interquartile band over time; see :func:`seqacts.plots_time.bands`."""
        from .viz import plots_time

        return plots_time.bands(self._ds, units, group, **kwargs)

    def saturation(self, low: float = 0.1, high: float = 0.9, **kwargs: Any) -> Figure:
        """Left vs right gate saturation; see :func:`seqacts.plots.saturation`."""
        from .viz import plots

        return plots.saturation(self._ds, low=low, high=high, **kwargs)

    def compare(self, group: Any, **kwargs: Any) -> Figure:
        """Ranked effect sizes; see :func:`seqacts.plots.compare`."""
        from .viz import plots

        return plots.compare(self._ds, group, **kwargs)

    def distance(self, reference: Any, group: Any = None, **kwargs: Any) -> Figure:
        """Score histograms per group; see :func:`seqacts.plots.distance`."""
        from .viz import plots

        return plots.distance(self._ds, reference, group=group, **kwargs)
