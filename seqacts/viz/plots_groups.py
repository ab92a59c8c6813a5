"""Figures of groups of samples: units ranked by effect size, and anomaly-score histograms.

Part of :mod:`seqacts.viz.plots` (which exposes these functions too); each function returns a
matplotlib Figure and never shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..analysis.compare import compare as compare_groups
from ..analysis.compare import distance as distance_scores
from ..analysis.compare import group_labels, roc_auc
from ..signatures import keywords_from
from .figure_style import CYCLE, SMALL, group_colors, group_name, subplots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["compare", "distance", "unit_name"]


@keywords_from(compare_groups)
def compare(
    ds: xr.Dataset,
    group: str | xr.DataArray | Sequence[Any],
    *,
    top: int = 20,
    result: xr.Dataset | None = None,
    **kwargs: Any,
) -> Figure:
    """The ``top`` units ranked by effect size (Cohen's d) between groups, as bars.

    Parameters
    ----------
    group : str, xarray.DataArray or sequence
        Labels along sample, see :func:`seqacts.compare` (other keywords go there).
    result : xarray.Dataset, optional
        A ready :func:`seqacts.compare` result of ``ds`` and ``group`` to draw.

    Returns
    -------
    matplotlib.figure.Figure
    """
    result = result if result is not None else compare_groups(ds, group, **kwargs)
    res = result.isel(rank=slice(0, top))
    n = res.sizes["rank"]
    fig, axes = subplots(1, 1, figsize=(7, 1.2 + 0.28 * max(n, 1)))
    ax = axes[0, 0]
    names = [unit_name(res.isel(rank=i)) for i in range(n)]
    d = np.nan_to_num(res["d"].values, posinf=1e3, neginf=-1e3)
    ax.barh(np.arange(n), d, color=_bar_colors(ds, group, res))
    ax.set_yticks(np.arange(n), names, fontsize=SMALL)
    ax.invert_yaxis()
    ax.axvline(0, color="0.3", lw=0.8)
    a = result.attrs
    ax.set_xlabel(f"Cohen's d: {a.get('group')}={a.get('levels')} vs {a.get('baseline')}")
    feature = {"mean": f"each unit's mean {a.get('var')} over the window",
               "h_n": "each unit's final state h_n", "c_n": "each unit's final cell state c_n",
               "deviation": f"each unit's distance from normal ({a.get('var')})"}.get(
                   str(a.get("feature")), f"{a.get('feature')} of {a.get('var')}")  # fmt: skip
    title = f"units ranked by |d| of {feature}"
    ax.set_title(title, loc="left", fontsize="medium")
    return fig


def _bar_colors(ds: xr.Dataset, group: Any, result: xr.Dataset) -> list[str]:
    """Each row in the colour of the group it compares with the baseline (grey when pooled)."""
    labels = group_labels(ds, group)
    by_name = {str(lv): c for lv, c in group_colors(labels, result.attrs.get("baseline")).items()}
    n = result.sizes["rank"]
    levels = result["level"].values if "level" in result.coords else [result.attrs.get("levels")] * n
    return [by_name.get(str(lv), CYCLE[-1]) for lv in levels]


def unit_name(row: xr.Dataset | xr.DataArray) -> str:
    parts = [str(row["layer"].values)]
    if "direction" in row.coords and row["direction"].item() != "forward":
        parts.append(str(row["direction"].values))
    parts.append(f"u{int(row['unit'])}")
    if "level" in row.coords:
        parts.insert(0, f"[{row['level'].item()}]")
    return " ".join(parts)


@keywords_from(distance_scores)
def distance(
    ds: xr.Dataset,
    reference: Any = None,
    *,
    group: str | xr.DataArray | Sequence[Any] | None = None,
    scores: xr.DataArray | None = None,
    bins: int = 30,
    baseline: Any = None,
    **kwargs: Any,
) -> Figure:
    """Histograms of the Mahalanobis score per group, one panel per layer, ROC AUC in titles.

    Parameters
    ----------
    reference : xarray.Dataset or boolean mask along sample
        See :func:`seqacts.distance` (other keywords go there).
    group : optional
        Labels along sample to split the histograms by; default the reference mask.
    scores : xarray.DataArray, optional
        Ready scores (dims ``sample, layer``) instead of computing them.
    baseline : optional
        The baseline group, drawn in the first colour (see :func:`group_colors`).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if scores is None:
        scores = distance_scores(ds, reference, **kwargs)
    if group is None and reference is not None and not isinstance(reference, xr.Dataset):
        mask = group_labels(ds, reference).values.astype(bool)
        group = xr.DataArray(np.where(mask, "reference", "other"), dims="sample", name="set")
    labels = None if group is None else group_labels(ds, group)
    layers = list(scores["layer"].values) if "layer" in scores.dims else [None]
    legend = 2.4 if group is not None else 0.0  # room for the legend beside the panels
    fig, axes = subplots(1, len(layers), figsize=(3.6 * len(layers) + 0.5 + legend, 3.2))
    for ax, layer in zip(axes[0], layers, strict=True):
        score = scores if layer is None else scores.sel(layer=layer)
        finite = score.values[np.isfinite(score.values)]
        edges = np.histogram_bin_edges(finite, bins=bins) if finite.size else bins
        title = str(layer) if layer is not None else ""
        if labels is None:
            ax.hist(finite, bins=edges, color=CYCLE[0], alpha=0.8)
        else:
            for level, color in group_colors(labels, baseline).items():
                part = score.values[labels.values == level]
                name = f"{group_name(labels, level)} ({part.size})"
                ax.hist(part[np.isfinite(part)], bins=edges, color=color, alpha=0.55, label=name)
            if set(labels.values.tolist()) <= {False, True}:
                title += f"  AUC {float(roc_auc(score, labels)):.3f}"
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(f"Mahalanobis distance of {scores.attrs.get('var', 'h_n')}")
    axes[0, 0].set_ylabel("samples")
    if labels is not None:
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center",
                   fontsize=SMALL)  # fmt: skip
    return fig
