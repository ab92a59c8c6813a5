"""The ``ds.seqacts`` accessor: one-line delegates to the plain functions that do the work.

Importing this module registers the accessor on every ``xarray.Dataset``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

from .analysis import core as analysis
from .analysis.compare import compare, distance, final_state
from .analysis.summary import summary, summary_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SeqactsAccessor", "PlotAccessor"]


@xr.register_dataset_accessor("seqacts")
class SeqactsAccessor:
    """Analyses of a seqacts dataset: ``ds.seqacts.<method>``; plots under ``ds.seqacts.plot``."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    @property
    def plot(self) -> PlotAccessor:
        """Figures: ``heatmap``, ``traces``, ``saturation``, ``compare``, ``distance``."""
        return PlotAccessor(self._ds)

    def layer(self, name: str) -> xr.Dataset:
        """One layer without padding; see :func:`seqacts.analysis.layer`."""
        return analysis.layer(self._ds, name)

    def masked(self, name: str = "h") -> xr.DataArray:
        """A variable with padding set to NaN; see :func:`seqacts.analysis.masked`."""
        return analysis.masked(self._ds, name)

    def saturation(self, low: float = 0.1, high: float = 0.9) -> xr.Dataset:
        """Left/right gate saturation fractions; see :func:`seqacts.analysis.saturation`."""
        return analysis.saturation(self._ds, low=low, high=high)

    def dead_units(
        self, tol: float = 1e-5, level: float = 0.99, fraction: float = 0.99
    ) -> xr.Dataset:
        """Constant or saturated units; see :func:`seqacts.analysis.dead_units`."""
        return analysis.dead_units(self._ds, tol=tol, level=level, fraction=fraction)

    def summary(self, low: float = 0.1, high: float = 0.9, tol: float = 1e-5) -> xr.Dataset:
        """Per-layer summary Dataset; see :func:`seqacts.summary.summary`."""
        return summary(self._ds, low=low, high=high, tol=tol)

    def summary_table(self, low: float = 0.1, high: float = 0.9, tol: float = 1e-5) -> str:
        """The summary as a printable table; see :func:`seqacts.summary.summary_table`."""
        return summary_table(self._ds, low=low, high=high, tol=tol)

    def step_change(self) -> xr.DataArray:
        """``||h_t - h_prev||`` per step; see :func:`seqacts.analysis.step_change`."""
        return analysis.step_change(self._ds)

    def final_state(self, var: str = "h") -> xr.DataArray:
        """Last processed value per sample; see :func:`seqacts.compare.final_state`."""
        return final_state(self._ds, var)

    def compare(
        self,
        group: str | xr.DataArray | Sequence[Any],
        feature: str | xr.DataArray = "mean",
        var: str = "h",
        baseline: Any = None,
    ) -> xr.Dataset:
        """Units ranked by Cohen's d between groups; see :func:`seqacts.compare.compare`."""
        return compare(self._ds, group, feature=feature, var=var, baseline=baseline)

    def distance(
        self,
        reference: xr.Dataset | str | xr.DataArray | Sequence[bool],
        var: str = "h_n",
        shrinkage: float | None = None,
        folds: int = 5,
    ) -> xr.DataArray:
        """Mahalanobis anomaly score per sample and layer; see :func:`seqacts.compare.distance`."""
        return distance(self._ds, reference, var=var, shrinkage=shrinkage, folds=folds)


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
