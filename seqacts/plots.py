"""Figures of a seqacts dataset; each function returns a matplotlib Figure and never shows it.

Labels come from the dataset's coordinates and attributes; time axes use the ``time``
coordinate (dates when it holds datetimes). When no matplotlib backend was chosen (no
``MPLBACKEND``, pyplot not yet imported), the non-interactive Agg backend is selected so that
figures render headless.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from . import analysis
from . import compare as _compare

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["compare", "distance", "group_colors", "heatmap", "saturation", "traces"]

#: Colours of boolean groups: normal (False) and anomalous (True).
BOOL_COLORS = {False: "#4C72B0", True: "#C44E52"}
CYCLE = ("#4C72B0", "#C44E52", "#55A868", "#8172B2", "#CCB974", "#64B5CD", "#8C8C8C")


def _plt() -> Any:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        if matplotlib.rcParams._get_backend_or_none() is None:  # type: ignore[attr-defined]
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subplots(nrows: int, ncols: int = 1, **kwargs: Any) -> tuple[Figure, np.ndarray]:
    fig, axes = _plt().subplots(nrows, ncols, squeeze=False, layout="constrained", **kwargs)
    return fig, axes


def _label(da: xr.DataArray | xr.Variable, default: str) -> str:
    name = da.attrs.get("long_name", default)
    units = da.attrs.get("units")
    return f"{name} [{units}]" if units else str(name)


def _time_axis(ax: Axes, ds: xr.Dataset | xr.DataArray) -> None:
    ax.set_xlabel(_label(ds["time"], "time") if "time" in ds.coords else "time")
    if "time" in ds.coords and np.issubdtype(ds["time"].dtype, np.datetime64):
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")


def _default_layer(ds: xr.Dataset, layer: str | None) -> str:
    return str(ds["layer"].values[0]) if layer is None else layer


def _sample_note(ds: xr.Dataset, sample: Any) -> str:
    """``is_anomaly=True, kind=spike``: the user's per-sample coordinates of one sample."""
    notes = []
    for name, coord in ds.coords.items():
        if coord.dims == ("sample",) and name != "sample":
            notes.append(f"{name}={coord.sel(sample=sample).values}")
    return ", ".join(notes)


def group_colors(labels: xr.DataArray) -> dict[Any, str]:
    """A colour per group label: blue normal / red anomalous for booleans, a cycle otherwise."""
    levels = sorted(set(labels.values.tolist()), key=lambda v: (str(type(v)), v))
    if set(levels) <= {False, True}:
        return {lv: BOOL_COLORS[bool(lv)] for lv in levels}
    return {lv: CYCLE[i % len(CYCLE)] for i, lv in enumerate(levels)}


def _group_name(labels: xr.DataArray, level: Any) -> str:
    return f"{labels.name or 'group'}={level}"


def _panel(ax: Axes, ds: xr.Dataset, panel: str | xr.DataArray, sample: Any, layer: str) -> None:
    if isinstance(panel, str) and panel == "step_change":
        da = analysis.step_change(ds.sel(layer=[layer], sample=[sample])).isel(layer=0, sample=0)
    elif isinstance(panel, str):
        if panel not in ds:
            raise ValueError(
                f"panel: no variable {panel!r}; use a variable along time or a DataArray"
            )
        da = ds[panel]
    else:
        da = panel
    if "sample" in da.dims:
        da = da.sel(sample=sample)
    if "time" not in da.dims:
        raise ValueError(f"panel: expected a variable along 'time', got dims {da.dims}")
    da = da.transpose("time", ...)
    x = da["time"].values if "time" in da.coords else ds["time"].values[: da.sizes["time"]]
    values = da.values.reshape(da.sizes["time"], -1)
    other = [d for d in da.dims if d != "time"]
    names = da[other[0]].values if len(other) == 1 and other[0] in da.coords else None
    keep = np.flatnonzero(np.isfinite(values).any(axis=0))  # e.g. a missing direction
    names = None if names is None else names[keep]
    for i, col in enumerate(keep):
        ax.plot(x, values[:, col], lw=1, label=None if names is None else f"{other[0]} {names[i]}")
    if names is not None and 1 < len(names) <= 10:
        ax.legend(loc="upper left", fontsize="small", ncols=min(len(names), 5))
    ax.set_ylabel(_label(da, str(da.name or panel)))


def heatmap(
    ds: xr.Dataset,
    sample: Any = None,
    layer: str | None = None,
    *,
    var: str = "h",
    panel: str | xr.DataArray | None = None,
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
    panel : str or xarray.DataArray, optional
        A second panel aligned in time below: the name of a variable along ``time`` (e.g. the
        model's input attached to the dataset), ``"step_change"``, or a DataArray such as an
        anomaly score per step.

    Returns
    -------
    matplotlib.figure.Figure
    """
    layer = _default_layer(ds, layer)
    sample = ds["sample"].values[0] if sample is None else sample
    one = analysis.layer(ds, layer).sel(sample=sample)
    if var not in one:
        raise analysis.MissingVariableError(f"heatmap: layer {layer!r} has no variable {var!r}")
    width = int(one["n_cell_units"] if var in analysis.CELL_WIDTH_VARS else one["n_units"])
    da = one[var].isel(time=slice(0, int(one["length"])), unit=slice(0, width))
    if "direction" not in da.dims:
        da = da.expand_dims(direction=["forward"])
    dirs = list(da["direction"].values)
    rows = len(dirs) + (panel is not None)
    fig, axes = _subplots(rows, 1, sharex=True, figsize=(9, 2.2 + 1.6 * rows))
    finite = np.abs(da.values[np.isfinite(da.values)])
    vmax = float(finite.max()) if finite.size else 1.0
    sigmoid = var in analysis.SIGMOID_GATES
    vmin, vmax, cmap = (0.0, 1.0, "viridis") if sigmoid else (-vmax, vmax, cmap)
    for ax, direction in zip(axes[: len(dirs), 0], dirs, strict=True):
        part = da.sel(direction=direction).transpose("unit", "time")
        xy = (part["time"].values, part["unit"].values, part.values)
        mesh = ax.pcolormesh(*xy, shading="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_ylabel(f"unit ({direction})" if len(dirs) > 1 else "unit")
        fig.colorbar(mesh, ax=ax, label=_label(ds[var], var), pad=0.01)
    kind = str(one["kind"].values) if "kind" in one.coords else ""
    note = _sample_note(ds, sample)
    title = f"{var} of {layer} ({kind}), sample {sample}" + (f" — {note}" if note else "")
    axes[0, 0].set_title(title, loc="left", fontsize="medium")
    if panel is not None:
        _panel(axes[-1, 0], ds, panel, sample, layer)
    _time_axis(axes[-1, 0], ds)
    return fig


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
    layer = _default_layer(ds, layer)
    da = analysis.masked(ds.sel(layer=[layer]), var).sel(layer=layer)
    if "direction" in da.dims:
        da = da.sel(direction=direction)
    width = analysis.layer(ds, layer).sizes["unit"]
    if units is None:
        spread = da.isel(unit=slice(0, width)).std(["sample", "time"]).fillna(-1).values
        units = sorted(np.argsort(-spread, kind="stable")[: min(4, width)].tolist())
    units = [int(units)] if isinstance(units, (int, np.integer)) else [int(u) for u in units]
    labels = None if group is None else _compare.group_labels(ds, group)
    if samples is None:
        samples = _pick_samples(ds, labels, max_samples)
    colors = group_colors(labels) if labels is not None else {}
    fig, axes = _subplots(len(units), 1, sharex=True, figsize=(9, 1.2 + 1.7 * len(units)))
    seen: set[Any] = set()
    for ax, unit in zip(axes[:, 0], units, strict=True):
        for s in samples:
            level = labels.sel(sample=s).item() if labels is not None else None
            label = None
            if labels is not None and level not in seen:
                seen.add(level)
                label = _group_name(labels, level)
            line = da.sel(sample=s, unit=unit)
            color = colors.get(level, CYCLE[0])
            ax.plot(line["time"].values, line.values, lw=1, alpha=0.6, color=color, label=label)
        ax.set_ylabel(f"unit {unit}")
    if seen:
        axes[0, 0].legend(loc="upper right", fontsize="small")
    kind = f" ({ds['kind'].sel(layer=layer).values})" if "kind" in ds.coords else ""
    title = f"{var} of {layer}{kind}, {direction}, {len(samples)} samples"
    axes[0, 0].set_title(title, loc="left", fontsize="medium")
    _time_axis(axes[-1, 0], ds)
    return fig


def _pick_samples(ds: xr.Dataset, labels: xr.DataArray | None, limit: int) -> list[Any]:
    values = ds["sample"].values
    if labels is None:
        return list(values[:limit])
    levels = list(group_colors(labels))
    per = max(1, limit // len(levels))
    return [s for lv in levels for s in values[labels.values == lv][:per]]


def saturation(ds: xr.Dataset, low: float = 0.1, high: float = 0.9) -> Figure:
    """Left- vs right-saturation fraction of every unit, one panel per sigmoid gate.

    Points near the ``x + y = 1`` line are gates almost always saturated one way or the other;
    points near the origin are gates that mostly operate in their linear range.

    Returns
    -------
    matplotlib.figure.Figure
    """
    sat = analysis.saturation(ds, low=low, high=high)
    gates = [str(g) for g in sat["gate"].values if np.isfinite(sat["left"].sel(gate=g)).any()]
    fig, axes = _subplots(
        1, len(gates), figsize=(3.2 * len(gates) + 1.5, 4.0), sharex=True, sharey=True
    )
    for i, (ax, gate) in enumerate(zip(axes[0], gates, strict=True)):
        ax.plot([0, 1], [1, 0], color="0.6", lw=1, ls="--", zorder=0)
        for j, layer in enumerate(sat["layer"].values):
            part = sat.sel(gate=gate, layer=layer)
            ok = np.isfinite(part["left"].values)
            if ok.any():
                ax.scatter(
                    part["left"].values[ok],
                    part["right"].values[ok],
                    s=14,
                    alpha=0.7,
                    color=CYCLE[j % len(CYCLE)],
                    label=str(layer),
                )
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal", title=gate.replace("_", " "))
        ax.set_xlabel(f"fraction left-saturated (< {low:g})")
        if i == 0:
            ax.set_ylabel(f"fraction right-saturated (> {high:g})")
    entries = {n: h for ax in axes[0] for h, n in zip(*ax.get_legend_handles_labels(), strict=True)}
    handles, names = list(entries.values()), list(entries)
    if handles:
        fig.legend(handles, names, loc="outside right center", fontsize="small")
    return fig


def compare(
    ds: xr.Dataset | None,
    group: str | xr.DataArray | Sequence[Any] | None = None,
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
        A ready :func:`seqacts.compare.compare` result (then ``ds`` and ``group`` are unused).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if result is None:
        if ds is None or group is None:
            raise ValueError("compare: pass a dataset and a group, or result=")
        result = _compare.compare(ds, group, **kwargs)
    res = result.isel(rank=slice(0, top))
    n = res.sizes["rank"]
    fig, axes = _subplots(1, 1, figsize=(7, 1.2 + 0.28 * max(n, 1)))
    ax = axes[0, 0]
    names = [_unit_name(res.isel(rank=i)) for i in range(n)]
    d = np.nan_to_num(res["d"].values, posinf=1e3, neginf=-1e3)
    ax.barh(np.arange(n), d, color=[BOOL_COLORS[bool(v > 0)] for v in d])
    ax.set_yticks(np.arange(n), names, fontsize="small")
    ax.invert_yaxis()
    ax.axvline(0, color="0.3", lw=0.8)
    a = result.attrs
    ax.set_xlabel(f"Cohen's d: {a.get('group')}={a.get('levels')} vs {a.get('baseline')}")
    ax.set_title(
        f"units ranked by |d| of {a.get('feature')} of {a.get('var')}",
        loc="left",
        fontsize="medium",
    )
    return fig


def _unit_name(row: xr.Dataset) -> str:
    parts = [str(row["layer"].values)]
    if "direction" in row.coords and row["direction"].item() != "forward":
        parts.append(str(row["direction"].values))
    parts.append(f"u{int(row['unit'])}")
    if "level" in row.coords:
        parts.insert(0, f"[{row['level'].item()}]")
    return " ".join(parts)


def distance(
    ds: xr.Dataset,
    reference: Any = None,
    *,
    group: str | xr.DataArray | Sequence[Any] | None = None,
    scores: xr.DataArray | None = None,
    bins: int = 30,
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

    Returns
    -------
    matplotlib.figure.Figure
    """
    if scores is None:
        scores = _compare.distance(ds, reference, **kwargs)
    if group is None and reference is not None and not isinstance(reference, xr.Dataset):
        mask = _compare.group_labels(ds, reference).values.astype(bool)
        group = xr.DataArray(np.where(mask, "reference", "other"), dims="sample", name="set")
    labels = None if group is None else _compare.group_labels(ds, group)
    layers = list(scores["layer"].values) if "layer" in scores.dims else [None]
    fig, axes = _subplots(1, len(layers), figsize=(3.6 * len(layers) + 0.5, 3.2))
    for ax, layer in zip(axes[0], layers, strict=True):
        score = scores if layer is None else scores.sel(layer=layer)
        finite = score.values[np.isfinite(score.values)]
        edges = np.histogram_bin_edges(finite, bins=bins) if finite.size else bins
        title = str(layer) if layer is not None else ""
        if labels is None:
            ax.hist(finite, bins=edges, color=CYCLE[0], alpha=0.8)
        else:
            for level, color in group_colors(labels).items():
                part = score.values[labels.values == level]
                ax.hist(
                    part[np.isfinite(part)],
                    bins=edges,
                    color=color,
                    alpha=0.55,
                    label=f"{_group_name(labels, level)} ({part.size})",
                )
            if set(labels.values.tolist()) <= {False, True}:
                title += f"  AUC {float(_compare.roc_auc(score, labels)):.3f}"
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(f"Mahalanobis distance of {scores.attrs.get('var', 'h_n')}")
    axes[0, 0].set_ylabel("samples")
    if labels is not None:
        axes[0, 0].legend(fontsize="small")
    return fig
