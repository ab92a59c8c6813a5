"""A self-contained HTML report of a seqacts dataset: figures embedded, tables, provenance.

``report(ds, out_dir)`` writes ``report.html`` (no server and no other file needed to read it)
and each figure as a PNG beside it. With a group (e.g. ``is_anomaly`` or a categorical
``anomaly``) it adds, per kind, the scores' ROC AUC, a typical window, the units that carry it
and the units' effects on the score: from a precomputed ablation scan, or from one the report
runs itself when given the model, its inputs and a score (:mod:`seqacts.viz.report_scan`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..analysis import core as analysis
from ..analysis.compare import compare
from ..analysis.summary import summary, summary_rows
from ..errors import GroupError, OutputExistsError
from ..schema import SIGMOID_GATES
from . import plots
from .html_page import Page, table
from .plots_time import bands
from .report_kinds import kinds_sections, ranked_table
from .report_labels import Kinds, resolve_kinds
from .report_summary import findings, summary_html, summary_text

if TYPE_CHECKING:
    from .report_scan import ModelScan

__all__ = ["report"]


def _default_group(ds: xr.Dataset) -> str | None:
    if "is_anomaly" in ds.variables and ds["is_anomaly"].dims == ("sample",):
        return "is_anomaly"
    return None


def _per_step(ds: xr.Dataset, boolean: bool) -> str | None:
    """The first user-attached variable along sample and time (not per layer), by dtype."""
    for name, var in ds.data_vars.items():
        if {"sample", "time"} <= set(var.dims) and "layer" not in var.dims:
            if (var.dtype == bool) == boolean:
                return str(name)
    return None


def _overview(page: Page, ds: xr.Dataset, source: str | None) -> None:
    dims = ", ".join(f"{k}: {v}" for k, v in ds.sizes.items())
    rows = [
        [name, f"({', '.join(map(str, v.dims))})", str(v.dtype), v.attrs.get("long_name", "")]
        for name, v in ds.data_vars.items()
    ]
    page.section("Dataset")
    page.add(
        f"<p>Dimensions: {html.escape(dims)}; {ds.nbytes / 1e6:.1f} MB in memory.</p>"
        + table(["variable", "dims", "dtype", "meaning"], rows, (1, 2, 3))
    )
    attrs = [[k, v] for k, v in ds.attrs.items()]
    if source:
        attrs.insert(0, ["file", source])
    page.section("Provenance")
    page.add(table(["attribute", "value"], attrs, (1,)))


def _dead_section(page: Page, ds: xr.Dataset) -> None:
    dead = analysis.dead_units(ds)
    flat = dead.stack(p=[d for d in ("layer", "direction", "unit") if d in dead.dims])
    hits = flat.isel(p=np.flatnonzero(flat["dead"].values))
    page.section("Dead units")
    if hits.sizes["p"] == 0:
        page.add("<p>No unit is constant or saturated at &plusmn;1 on its valid steps.</p>")
        return
    rows = [
        [
            str(hits["layer"].values[i]),
            str(hits["direction"].values[i]),
            int(hits["unit"].values[i]),
            "constant" if bool(hits["constant"].values[i]) else "saturated",
            f"{float(hits['std'].values[i]):.2e}",
            f"{float(hits['saturated_fraction'].values[i]):.1%}",
        ]
        for i in range(hits.sizes["p"])
    ]
    page.add(table(["layer", "direction", "unit", "why", "std", "|h| >= 0.99"], rows))


def _compare_section(page: Page, ds: xr.Dataset, k: Kinds, top: int) -> None:
    name = str(k.labels.name)
    page.section(f"Units that respond to {name} over whole windows")
    page.add(
        "<p class=note>Cohen's d between groups of each unit's mean hidden state over all valid "
        "steps (first) and of its final state h_n (second), each kind against "
        f"{html.escape(k.name(k.baseline))}. Averaging over the whole window dilutes an anomaly "
        "that lasts a few steps; the sections per kind localize it. Bars take the colour of "
        "the kind they compare. |d| &lt; 0.2 negligible, 0.2 small, 0.5 medium, 0.8 large.</p>"
    )
    results = {}
    for feature in ("mean", "h_n"):
        result = compare(ds, k.labels, feature=feature, baseline=k.baseline)
        results[feature] = result
        fig = plots.compare(ds, k.labels, result=result, top=top)
        page.figure(fig, f"compare_{feature}", f"ranked effect sizes of {feature}")
        page.add(ranked_table(result.isel(rank=slice(0, top)), k))
    ranked = results["mean"]
    if ranked.sizes["rank"]:
        best = str(ranked["magnitude"].values[0])
        if best in ("negligible", "small"):
            page.add(f"<p class=note>The largest whole-window effect is {best}: no unit's "
                     "average over the window responds clearly to the group.</p>")  # fmt: skip
        head = ranked.isel(rank=slice(0, 4))
        levels = [k.baseline, *k.kinds]
        if "level" in head.coords:  # the kind each unit was ranked for, not every band at once
            shown = {str(v) for v in head["level"].values}
            levels = [k.baseline, *[kind for kind in k.kinds if str(kind) in shown]]
        fig = bands(ds, head, k.labels, levels=levels, baseline=k.baseline)
        names = ", ".join(k.name(level) for level in levels)
        page.figure(fig, "units_whole_window", "top units over time: mean and interquartile "
                    f"band over the windows of each of {names}")  # fmt: skip


def _activations(page: Page, ds: xr.Dataset) -> None:
    page.section("Activations")
    sample = ds["sample"].values[0]
    panel = _per_step(ds, boolean=False) or "step_change"
    highlight = _per_step(ds, boolean=True)
    for name in ds["layer"].values:
        fig = plots.heatmap(ds, sample, str(name), panel=panel, highlight=highlight)
        marked = f"; dashed boxes: {highlight}" if highlight else ""
        page.figure(fig, f"heatmap_{name}", f"hidden state of {name}, sample {sample}{marked}")


def _legend(k: Kinds) -> str:
    items = "".join(
        f"<li>{k.swatch(level)}{html.escape(k.name(level))}"
        f" ({int(np.sum(k.labels.values == level))} samples)</li>"
        for level in [k.baseline, *k.kinds]
    )
    return f"<p class=note>Groups and their colours in every figure:</p><ul>{items}</ul>"


def _kinds_part(
    page: Page,
    ds: xr.Dataset,
    k: Kinds,
    reference: Any,
    ablation: xr.Dataset | None,
    scan: ModelScan | None,
    out: Path,
    top: int,
    mask: str | None = None,
    lead: str | None = None,
) -> list[list[str]]:
    """The sections per kind and the whole-window comparison; saves a scan the report ran.
    Returns the summary's rows."""
    if reference is None:
        reference = xr.DataArray(k.labels.values == k.baseline, dims="sample")
    ctx = kinds_sections(page, ds, k, reference, ablation, top, scan=scan, mask=mask, lead=lead)
    if scan is not None and ctx.ablation is not None:
        ctx.ablation.to_netcdf(out / "ablation.nc")
    else:
        _remove_stale_scan(out, ablation)
    _compare_section(page, ds, k, top)
    return findings(ctx)


def _remove_stale_scan(out: Path, ablation: xr.Dataset | None) -> None:
    """Remove an earlier run's ``ablation.nc`` unless it is the ``ablation=`` this report shows:
    only a scan the report runs itself is saved there. Called once the report's scan, if any,
    has run, so a failing scan leaves the earlier file."""
    path = out / "ablation.nc"
    source = ablation.encoding.get("source") if ablation is not None else None
    if path.exists() and not (source and Path(source).resolve() == path.resolve()):
        path.unlink()


def _gates_section(page: Page, ds: xr.Dataset) -> None:
    if not any(g in ds for g in SIGMOID_GATES):
        return
    page.section("Gate saturation")
    page.add(
        "<p class=note>Fraction of valid steps each unit's gate spends below 0.1 (left) or "
        "above 0.9 (right); points on the dashed line are always saturated (Karpathy, "
        "Johnson &amp; Fei-Fei, 2015).</p>"
    )
    page.figure(plots.saturation(ds), "saturation", "left vs right saturation per gate")


def _out_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"out_dir: {out} is a file; pass a directory to write into")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _header(ds: xr.Dataset) -> str:
    return (
        f"<p class=note>{ds.sizes.get('sample', 1)} samples, {ds.sizes.get('layer', 1)} layers, "
        f"up to {ds.sizes.get('time', 0)} steps; created "
        f"{html.escape(str(ds.attrs.get('created', '?')))}</p>"
    )


def report(
    ds: xr.Dataset,
    out_dir: str | Path,
    *,
    group: str | xr.DataArray | None = None,
    reference: Any = None,
    kinds: str | None = None,
    baseline: Any = None,
    ablation: xr.Dataset | None = None,
    model: Any = None,
    inputs: Any = None,
    score: Callable[[Any], Any] | None = None,
    title: str | None = None,
    top: int = 15,
    mask: str | None = None,
    score_var: str | None = None,
) -> Path:
    """Write ``report.html`` and its figures (PNG) into ``out_dir``.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset (in memory or opened lazily).
    out_dir : str or pathlib.Path
        Created when missing; existing report files are overwritten.
    group : str or xarray.DataArray, optional
        Boolean or categorical labels along sample; default the ``is_anomaly`` coordinate
        when present.
    reference : optional
        Normal samples for the anomaly scores (a Dataset or a boolean mask along sample);
        default the baseline samples, each scored out of fold.
    kinds : str, optional
        With a boolean group: a categorical coordinate naming the kind of each flagged sample
        (default: one found automatically, see :func:`seqacts.viz.report_labels.resolve_kinds`).
    baseline : optional
        The level the others are compared with; default ``False``, ``"normal"`` or the most
        frequent label.
    ablation : xarray.Dataset, optional
        A precomputed ablation scan with ``effect`` (sample, layer, direction, unit) and/or
        ``mean_effect``: the change of an anomaly score when each unit is silenced.
    model : torch.nn.Module, optional
        The recorded model: with ``inputs`` and ``score``, the report runs
        :func:`seqacts.ablation_scan` on the units it ranks (the top ``top`` units of each
        kind, in their layers) and shows their effects like ``ablation=``; the scan is saved
        as ``out_dir/ablation.nc``. Needs a group. Without a model, an ``ablation.nc`` left
        there by an earlier run is removed (unless it is the ``ablation=`` shown).
    inputs : torch.Tensor, tuple or dict, optional
        The input batch ``ds`` was recorded from, one sample per sample of ``ds``, in order:
        ``model(inputs)``, ``model(*inputs)`` for a tuple (``(x, lengths)``) or
        ``model(**inputs)`` for a dict, as ``x`` of :func:`seqacts.ablation_scan`.
    score : callable, optional
        ``score(outputs)`` -> one float per sample, e.g. the reconstruction error; required
        with ``model`` (a score attached to ``ds`` cannot be recomputed from ablated runs).
    title : str, optional
        Heading; default names the model class.
    top : int
        How many units the rankings list.
    mask : str, optional
        The boolean (sample, time) variable marking the anomalous steps, on which the units
        are localized and the onset is read; default the first such variable of ``ds`` (e.g.
        ``anomaly_mask``), else the steps whose step distance exceeds the baseline's 99th
        percentile.
    score_var : str, optional
        A per-sample variable of ``ds`` (e.g. a reconstruction error) listed first among the
        scores.

    The page leads with a summary per kind (best score and its ROC AUC, the units that carry
    the kind with d and its 95% CI, when the state leaves normal relative to the onset),
    also written as ``summary.txt`` beside it.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.

    Raises
    ------
    OptionError
        ``model``, ``inputs`` and ``score`` not given together, or with ``ablation``.
    InputError
        ``inputs`` holds another number of samples than ``ds``.
    EditError
        ``inputs`` holds no tensor, or one whose samples are ambiguous.
    """
    group = group if group is not None else _default_group(ds)
    scan = None
    if model is not None or inputs is not None or score is not None:
        from .report_scan import model_scan  # torch only when a model is given

        scan = model_scan(ds, model, inputs, score, ablation)
        if group is None:
            raise GroupError(
                "report: model= ablates the units that respond to a group; pass group= (e.g. "
                "group='is_anomaly')"
            )
    if score_var is not None:
        if score_var not in ds.variables or "sample" not in ds[score_var].dims:
            raise GroupError(f"score_var: ds has no per-sample variable {score_var!r}")
        if score_var in ds.coords:
            ds = ds.reset_coords(score_var)
    k = resolve_kinds(ds, group, kinds, baseline) if group is not None else None
    out = _out_dir(out_dir)
    page = Page(out)
    header = _header(ds)
    page.section("Layers")
    page.add(table(*summary_rows(summary(ds))))
    rows = None
    if k is not None:
        rows = _kinds_part(page, ds, k, reference, ablation, scan, out, top, mask, score_var)
        header += summary_html(rows, k.name(k.baseline)) + _legend(k)
    else:
        _activations(page, ds)
    _gates_section(page, ds)
    _dead_section(page, ds)
    _overview(page, ds, ds.encoding.get("source"))
    title = title or f"seqacts report: {ds.attrs.get('model_class', 'model')}"
    path = page.save("report.html", title, header)
    if rows is not None and k is not None:
        (out / "summary.txt").write_text(summary_text(rows, k.name(k.baseline)))
    else:  # an earlier run's summary would describe another report
        (out / "summary.txt").unlink(missing_ok=True)
    if k is None:
        _remove_stale_scan(out, ablation)
    return path
