"""Figures of a seqacts dataset; each function returns a matplotlib Figure and never shows it.

Labels come from the dataset's coordinates and attributes; time axes use the ``time``
coordinate (dates when it holds datetimes). Without a chosen matplotlib backend (no
``MPLBACKEND``, pyplot not yet imported) the non-interactive Agg backend is selected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..analysis import core as analysis
from ..analysis.compare import compare as compare_groups
from ..analysis.compare import distance as distance_scores
from ..analysis.compare import group_labels, roc_auc
from ..errors import OptionError
from ..schema import CELL_WIDTH_VARS, SIGMOID_GATES
from ..signatures import keywords_from
from .figure_style import (
    CYCLE,
    SMALL,
    group_colors,
    group_name,
    label,
    subplots,
    time_axis,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["compare", "distance", "group_colors", "heatmap", "saturation", "traces", "unit_name"]

def _sample_note(ds: xr.Dataset, sample: Any) -> str:
    """``is_anomaly=True, kind=spike``: the user's per-sample coordinates of one sample."""
    coords = [(k, c) for k, c in ds.coords.items() if c.dims == ("sample",) and k != "sample"]
    return ", ".join(f"{k}={c.sel(sample=sample).values}" for k, c in coords)


def _along_time(
    ds: xr.Dataset, spec: str | xr.DataArray, sample: Any, layer: str, option: str
) -> xr.DataArray:
    """Resolve a panel/highlight option into one sample's DataArray with ``time`` first."""
    if isinstance(spec, str) and spec == "step_change":
        da = analysis.step_change(ds.sel(layer=[layer], sample=[sample])).isel(layer=0, sample=0)
    elif isinstance(spec, str):
        if spec not in ds:
            raise analysis.MissingVariableError(
                f"{option}: no variable {spec!r}; name one along time or pass a DataArray"
            )
        da = ds[spec]
    else:
        da = spec
    da = da.sel(sample=sample) if "sample" in da.dims else da
    da = da.sel(layer=layer) if "layer" in da.dims else da
    if "time" not in da.dims:
        raise OptionError(
            f"{option}: expected a variable along 'time', got dims {da.dims}; pick one with a "
            "time dimension"
        )
    return da.transpose("time", ...)


def _panel(ax: Axes, da: xr.DataArray, x: np.ndarray, name: str) -> None:
    values = da.values.reshape(da.sizes["time"], -1)
    other = [d for d in da.dims if d != "time"]
    names = da[other[0]].values if len(other) == 1 and other[0] in da.coords else None
    keep = np.flatnonzero(np.isfinite(values).any(axis=0))  # e.g. a missing direction
    names = None if names is None else names[keep]
    for i, col in enumerate(keep):
        ax.plot(x, values[:, col], lw=1, label=None if names is None else f"{other[0]} {names[i]}")
    if names is not None and 1 < len(names) <= 10:
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.35 * (high - low))  # room above the lines for the legend
        ax.legend(loc="upper left", fontsize=SMALL, ncols=min(len(names), 5))
    ax.set_ylabel(label(da, str(da.name or name)))


def _shade(axes: Iterable[Axes], on: np.ndarray, x: np.ndarray, panels: Iterable[Axes]) -> None:
    """Mark the runs of steps where ``on`` is True: outlined on heatmaps, filled on panels."""
    half = (x[1] - x[0]) / 2 if len(x) > 1 else 0.5
    padded = np.r_[False, on.astype(bool), False]
    starts, ends = (
        np.flatnonzero(padded[1:] & ~padded[:-1]),
        np.flatnonzero(padded[:-1] & ~padded[1:]),
    )
    panels = list(panels)
    for a, b in zip(starts, ends - 1, strict=True):
        span = (x[a] - half, x[b] + half)
        for ax in axes:
            ax.axvspan(*span, fill=False, edgecolor="black", lw=1.5, ls="--")
        for ax in panels:
            ax.axvspan(*span, color="#F2C14E", alpha=0.35, lw=0, zorder=0)


def heatmap(
    ds: xr.Dataset,
    sample: Any = None,
    layer: str | None = None,
    *,
    var: str = "h",
    panel: str | xr.DataArray | Sequence[str | xr.DataArray] | None = None,
    highlight: str | xr.DataArray | None = None,
    cmap: str = "RdBu_r",
) -> Figure:
    """Units x time of one sample and layer, one panel per direction.

    Parameters
    ----------
    sample : optional
        A value of the ``sample`` coordinate; default the first sample.
    layer : str, optional
        A value of the ``layer`` coordinate; default the first layer.
    var : str
        The per-step variable to show (``"h"``, ``"c"``, a gate).
    panel : str, xarray.DataArray or a list of them, optional
        Panels aligned in time below: the name of a variable along ``time`` (e.g. the model's
        input attached to the dataset), ``"step_change"``, or a DataArray such as
        :func:`seqacts.step_distance.step_distance` of this layer.
    highlight : str or xarray.DataArray, optional
        A boolean variable along ``time`` (e.g. where an anomaly was injected) whose runs of
        True steps are outlined on the heatmaps and shaded on the panels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    layer = str(ds["layer"].values[0]) if layer is None else layer
    sample = ds["sample"].values[0] if sample is None else sample
    one = analysis.layer(ds, layer).sel(sample=sample)
    da = _valid_block(one, var, layer)
    dirs = list(da["direction"].values)
    panels: list[str | xr.DataArray] = []
    if isinstance(panel, str | xr.DataArray):
        panels = [panel]
    elif panel is not None:
        panels = list(panel)
    rows = len(dirs) + len(panels)
    fig, axes = subplots(rows, 1, sharex=True, figsize=(9, 2.2 + 1.6 * rows))
    _draw_units(axes[:, 0], da, ds[var], cmap)
    kind = str(one["kind"].values) if "kind" in one.coords else ""
    note = _sample_note(ds, sample)
    title = f"{var} of {layer} ({kind}), sample {sample}" + (f" — {note}" if note else "")
    axes[0, 0].set_title(title, loc="left", fontsize="medium")
    x = da["time"].values
    for ax, spec in zip(axes[len(dirs) :, 0], panels, strict=True):
        extra = _along_time(ds, spec, sample, layer, "panel")
        xs = extra["time"].values if "time" in extra.coords else x[: extra.sizes["time"]]
        _panel(ax, extra.isel(time=slice(0, len(x))), xs[: len(x)], str(spec))
    if highlight is not None:
        on = _along_time(ds, highlight, sample, layer, "highlight").values[: len(x)]
        _shade(axes[: len(dirs), 0], on, x, axes[len(dirs) :, 0])
    time_axis(axes[-1, 0], ds)
    return fig


def _valid_block(one: xr.Dataset, var: str, layer: str) -> xr.DataArray:
    """``var`` of one sample and layer over its valid steps and units, with a direction dim."""
    if var not in one:
        raise analysis.MissingVariableError(f"heatmap: layer {layer!r} has no variable {var!r}")
    width = int(one["n_cell_units"] if var in CELL_WIDTH_VARS else one["n_units"])
    da = one[var].isel(time=slice(0, int(one["length"])), unit=slice(0, width))
    return da if "direction" in da.dims else da.expand_dims(direction=["forward"])


def _draw_units(column: np.ndarray, da: xr.DataArray, var: xr.DataArray, cmap: str) -> None:
    """Units x time in the first axes of ``column``, one per direction, on one colour scale;
    one colourbar beside the whole column keeps heatmaps and panels aligned in time."""
    sigmoid, finite = var.name in SIGMOID_GATES, np.isfinite(da.values).any()
    vmax = float(np.nanmax(np.abs(da.values))) if finite and not sigmoid else 1.0
    vmin, cmap = (0.0, "viridis") if sigmoid else (-vmax, cmap)
    dirs = list(da["direction"].values)
    for ax, direction in zip(column[: len(dirs)], dirs, strict=True):
        part = da.sel(direction=direction).transpose("unit", "time")
        xy = (part["time"].values, part["unit"].values, part.values)
        mesh = ax.pcolormesh(*xy, shading="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_ylabel(f"unit ({direction})" if len(dirs) > 1 else "unit")
    fig = column[0].figure
    fig.colorbar(mesh, ax=list(column), label=label(var, str(var.name)), pad=0.01, shrink=0.9)


def traces(
    ds: xr.Dataset,
    units: int | Sequence[int] | None = None,
    layer: str | None = None,
    *,
    samples: Sequence[Any] | None = None,
    group: str | xr.DataArray | Sequence[Any] | None = None,
    var: str = "h",
    direction: str = "forward",
    max_samples: int = 40,
) -> Figure:
    """Selected units over time, one panel per unit, samples overlaid and coloured by group.

    Parameters
    ----------
    units : int or list of int, optional
        Units of ``layer`` to show; default the four with the largest variance.
    samples : list, optional
        Values of the ``sample`` coordinate; default up to ``max_samples`` samples, spread
        evenly over the groups.
    group : str, xarray.DataArray or sequence, optional
        Labels along sample (e.g. ``"is_anomaly"``) giving each group its colour.

    Returns
    -------
    matplotlib.figure.Figure
    """
    layer = str(ds["layer"].values[0]) if layer is None else layer
    da = analysis.masked(ds.sel(layer=[layer]), var).sel(layer=layer)
    if "direction" in da.dims:
        da = da.sel(direction=direction)
    width = analysis.layer(ds, layer).sizes["unit"]
    if units is None:
        spread = da.isel(unit=slice(0, width)).std(["sample", "time"]).fillna(-1).values
        units = sorted(np.argsort(-spread, kind="stable")[: min(4, width)].tolist())
    units = [int(units)] if isinstance(units, (int, np.integer)) else [int(u) for u in units]
    labels = None if group is None else group_labels(ds, group)
    if samples is None:
        samples = _pick_samples(ds, labels, max_samples)
    colors = group_colors(labels) if labels is not None else {}
    sub = da.sel(sample=list(samples), unit=units).load()  # one read, also when lazy
    levels = [None] * len(samples) if labels is None else labels.sel(sample=list(samples)).values
    fig, axes = subplots(len(units), 1, sharex=True, figsize=(9, 1.2 + 1.7 * len(units)))
    for ax, unit in zip(axes[:, 0], units, strict=True):
        for s, level in zip(samples, levels, strict=True):
            name = None if labels is None else group_name(labels, level)
            y, color = sub.sel(sample=s, unit=unit).values, colors.get(level, CYCLE[0])
            ax.plot(sub["time"].values, y, lw=1, alpha=0.6, color=color, label=name)
        ax.set_ylabel(f"unit {unit}")
    if labels is not None:
        entries = dict(zip(*axes[0, 0].get_legend_handles_labels()[::-1], strict=True))
        axes[0, 0].legend(entries.values(), entries.keys(), loc="upper right", fontsize=SMALL)
    kind = f" ({ds['kind'].sel(layer=layer).values})" if "kind" in ds.coords else ""
    title = f"{var} of {layer}{kind}, {direction}, {len(samples)} samples"
    axes[0, 0].set_title(title, loc="left", fontsize="medium")
    time_axis(axes[-1, 0], ds)
    return fig


def _pick_samples(ds: xr.Dataset, labels: xr.DataArray | None, limit: int) -> list[Any]:
    values = ds["sample"].values
    if labels is None:
        return list(values[:limit])
    per = max(1, limit // len(group_colors(labels)))
    return [s for lv in group_colors(labels) for s in values[labels.values == lv][:per]]


def saturation(ds: xr.Dataset, low: float = analysis.LOW, high: float = analysis.HIGH) -> Figure:
    """Left- vs right-saturation fraction of every unit, one panel per sigmoid gate.

    Points near the ``x + y = 1`` line are gates almost always saturated one way or the other;
    points near the origin are gates that mostly operate in their linear range.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sat = analysis.saturation(ds, low=low, high=high)
    gates = [str(g) for g in sat["gate"].values if np.isfinite(sat["left"].sel(gate=g)).any()]
    fig, axes = subplots(
        1, len(gates), figsize=(3.2 * len(gates) + 1.5, 4.0), sharex=True, sharey=True
    )
    for i, (ax, gate) in enumerate(zip(axes[0], gates, strict=True)):
        ax.plot([0, 1], [1, 0], color="0.6", lw=1, ls="--", zorder=0)
        for j, layer in enumerate(sat["layer"].values):
            part = sat.sel(gate=gate, layer=layer)
            ok = np.isfinite(part["left"].values)
            style = {"s": 14, "alpha": 0.7, "color": CYCLE[j % len(CYCLE)], "label": str(layer)}
            if ok.any():
                ax.scatter(part["left"].values[ok], part["right"].values[ok], **style)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal", title=gate.replace("_", " "))
        ax.set_xlabel(f"fraction left-saturated (< {low:g})")
        if i == 0:
            ax.set_ylabel(f"fraction right-saturated (> {high:g})")
    entries = {n: h for ax in axes[0] for h, n in zip(*ax.get_legend_handles_labels(), strict=True)}
    if entries:
        fig.legend(entries.values(), entries.keys(), loc="outside right center", fontsize=SMALL)
    return fig


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
        Labels along sample, see :func:`seqacts.compare.compare` (other keywords go there).
    result : xarray.Dataset, optional
        A ready :func:`seqacts.compare.compare` result of ``ds`` and ``group`` to draw.

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
        See :func:`seqacts.compare.distance` (other keywords go there).
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
