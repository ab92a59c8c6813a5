"""A self-contained HTML report of a seqacts dataset: figures embedded, tables, provenance.

``report(ds, out_dir)`` writes ``report.html`` (no server and no other file needed to read it)
and each figure as a PNG beside it.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..analysis import core as analysis
from ..analysis.compare import compare, distance, group_labels, roc_auc
from ..analysis.summary import summary, summary_rows
from ..errors import OutputExistsError
from . import plots

__all__ = ["report"]

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1100px; padding: 1.5em 2em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid
#ddd; padding-bottom: 0.2em; font-size: 1.25em; }
p.note { color: #555; margin-top: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e4e4e4; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
td.text { text-align: left; } code { font-size: 0.95em; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
div.row { display: flex; flex-wrap: wrap; gap: 1.5em; } div.row > div { flex: 1 1 420px; }
th.text { text-align: left; }
"""


def _table(headers: list[str], rows: list[list[Any]], text_cols: tuple[int, ...] = ()) -> str:
    head = "".join(
        f"<th{' class=text' if i in text_cols else ''}>{html.escape(str(h))}</th>"
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=text' if i in text_cols else ''}>{html.escape(str(c))}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Page:
    """Collects HTML sections and saves figures as PNG files and embedded images."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, fig: Any, name: str, caption: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plots._plt().close(fig)
        data = buf.getvalue()
        (self.out_dir / f"{name}.png").write_bytes(data)
        b64 = base64.b64encode(data).decode("ascii")
        self.add(
            f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )


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


def _overview(page: _Page, ds: xr.Dataset, source: str | None) -> None:
    attrs = [[k, v] for k, v in ds.attrs.items()]
    if source:
        attrs.insert(0, ["file", source])
    page.add("<h2>Provenance</h2>" + _table(["attribute", "value"], attrs, (1,)))
    dims = ", ".join(f"{k}: {v}" for k, v in ds.sizes.items())
    rows = [
        [name, f"({', '.join(map(str, v.dims))})", str(v.dtype), v.attrs.get("long_name", "")]
        for name, v in ds.data_vars.items()
    ]
    page.add(
        f"<h2>Dataset</h2><p>Dimensions: {html.escape(dims)}; {ds.nbytes / 1e6:.1f} MB in "
        "memory.</p>" + _table(["variable", "dims", "dtype", "meaning"], rows, (1, 2, 3))
    )


def _dead_section(page: _Page, ds: xr.Dataset) -> None:
    dead = analysis.dead_units(ds)
    flat = dead.stack(p=[d for d in ("layer", "direction", "unit") if d in dead.dims])
    hits = flat.isel(p=np.flatnonzero(flat["dead"].values))
    page.add("<h2>Dead units</h2>")
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
    page.add(_table(["layer", "direction", "unit", "why", "std", "|h| >= 0.99"], rows))


def _distance_section(
    page: _Page, ds: xr.Dataset, labels: xr.DataArray, reference: Any
) -> tuple[Any, str | None]:
    """Anomaly-score section; returns the highest-scoring flagged sample and its layer."""
    binary = set(labels.values.tolist()) <= {False, True}
    if reference is None and binary:
        reference = ~labels.astype(bool)
    if reference is None:
        return None, None
    scores = distance(ds, reference)
    where = "a separate reference dataset" if isinstance(reference, xr.Dataset) else (
        "the reference samples (scored out-of-fold)")  # fmt: skip
    page.add(
        "<h2>Anomaly score from hidden states</h2><p class=note>Mahalanobis distance of each "
        f"sample's final hidden state to {where}, with a Ledoit-Wolf shrinkage covariance.</p>"
    )
    page.figure(plots.distance(ds, scores=scores, group=labels), "distance", "score per group")
    if not binary:
        return None, None
    auc = roc_auc(scores, labels)
    rows = [[str(k), f"{float(auc.sel(layer=k)):.3f}", f"{float(scores['shrinkage'].sel(layer=k)):.3f}"]
            for k in scores["layer"].values]  # fmt: skip
    page.add(_table(["layer", f"ROC AUC ({labels.name})", "shrinkage"], rows))
    best = str(auc.idxmax("layer").values)
    flagged = np.where(labels.values.astype(bool), scores.sel(layer=best).values, -np.inf)
    return ds["sample"].values[int(np.argmax(flagged))], best


def _compare_section(page: _Page, ds: xr.Dataset, labels: xr.DataArray, top: int) -> None:
    page.add(
        f"<h2>Units that respond to {html.escape(str(labels.name))}</h2><p class=note>Cohen's "
        "d between groups of each unit's mean hidden state over valid steps (left) and of its "
        "final state h_n (right).</p><div class=row>"
    )
    results = {}
    for feature in ("mean", "h_n"):
        result = compare(ds, labels, feature=feature)
        results[feature] = result
        page.add("<div>")
        fig = plots.compare(ds, labels, result=result, top=top)
        page.figure(fig, f"compare_{feature}", f"ranked effect sizes of {feature}")
        head = result.isel(rank=slice(0, top))
        rows = [
            [int(head["rank"][i]), plots._unit_name(head.isel(rank=i)),
             f"{float(head['d'][i]):+.2f}", f"{float(head['mean'][i]):+.3f}",
             f"{float(head['baseline_mean'][i]):+.3f}"]
            for i in range(head.sizes["rank"])
        ]  # fmt: skip
        page.add(_table(["rank", "unit", "d", "group mean", "baseline"], rows, (1,)) + "</div>")
    page.add("</div>")
    ranked = results["mean"]
    if ranked.sizes["rank"]:
        layer = str(ranked["layer"].values[0])
        same = ranked["layer"].values == layer
        direction = "forward"
        if "direction" in ranked.coords:
            direction = str(ranked["direction"].values[0])
            same &= ranked["direction"].values == direction
        units = [int(u) for u in ranked["unit"].values[same][:4]]
        fig = plots.traces(ds, units, layer, group=labels, direction=direction)
        page.figure(fig, "traces", f"top units of {layer} ({direction}) over time, by group")


def report(
    ds: xr.Dataset,
    out_dir: str | Path,
    *,
    group: str | xr.DataArray | None = None,
    reference: Any = None,
    title: str | None = None,
    top: int = 15,
) -> Path:
    """Write ``report.html`` and its figures (PNG) into ``out_dir``.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset (in memory or opened lazily).
    out_dir : str or pathlib.Path
        Created when missing; existing report files are overwritten.
    group : str or xarray.DataArray, optional
        Labels along sample to compare; default the ``is_anomaly`` coordinate when present.
    reference : optional
        Normal samples for the anomaly score (a Dataset or a boolean mask); default the
        samples where a boolean ``group`` is False.
    title : str, optional
        Heading; default names the model class.
    top : int
        How many units the comparison lists.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"out_dir: {out} is a file; pass a directory to write into")
    out.mkdir(parents=True, exist_ok=True)
    page = _Page(out)
    model = ds.attrs.get("model_class", "model")
    title = title or f"seqacts report: {model}"
    page.add(f"<h1>{html.escape(title)}</h1>")
    page.add(
        f"<p class=note>{ds.sizes.get('sample', 1)} samples, {ds.sizes.get('layer', 1)} layers, "
        f"up to {ds.sizes.get('time', 0)} steps; created {html.escape(str(ds.attrs.get('created', '?')))}"
        "</p>"
    )
    table = summary(ds)
    headers, rows = summary_rows(table)
    page.add("<h2>Layers</h2>" + _table(headers, rows))
    group = group if group is not None else _default_group(ds)
    sample, focus = (None, None)
    if group is not None:
        labels = group_labels(ds, group)
        sample, focus = _distance_section(page, ds, labels, reference)
        _compare_section(page, ds, labels, top)
    page.add("<h2>Activations</h2>")
    why = " (the highest-scoring anomalous sample)" if sample is not None else ""
    sample = ds["sample"].values[0] if sample is None else sample
    panel = _per_step(ds, boolean=False) or "step_change"
    highlight = _per_step(ds, boolean=True)
    for name in ds["layer"].values:
        if focus is not None and str(name) != focus and ds.sizes["layer"] > 3:
            continue
        fig = plots.heatmap(ds, sample, str(name), panel=panel, highlight=highlight)
        marked = f"; dashed boxes: {highlight}" if highlight else ""
        page.figure(fig, f"heatmap_{name}", f"hidden state of {name}, sample {sample}{why}{marked}")
    if any(g in ds for g in analysis.SIGMOID_GATES):
        page.add(
            "<h2>Gate saturation</h2><p class=note>Fraction of valid steps each unit's gate "
            "spends below 0.1 (left) or above 0.9 (right); points on the dashed line are "
            "always saturated (Karpathy, Johnson &amp; Fei-Fei, 2015).</p>"
        )
        page.figure(plots.saturation(ds), "saturation", "left vs right saturation per gate")
    _dead_section(page, ds)
    _overview(page, ds, ds.encoding.get("source"))
    path = out / "report.html"
    path.write_text(
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(page.parts)
        + "</body></html>",
        encoding="utf-8",
    )
    return path
