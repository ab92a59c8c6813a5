"""Report sections per anomaly kind: how well each score separates it, a typical window, which
units carry it (localized effect sizes) and, given an ablation scan, which units cause the score.

A kind is a level of a categorical group (``anomaly``: spike, level_shift, ...) other than the
baseline; a boolean group (``is_anomaly``) is one kind.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..analysis.compare import compare, distance, roc_auc
from ..analysis.core import step_change
from ..analysis.effect_size import d_interval
from ..analysis.localized import deviation
from ..analysis.step_distance import step_distance
from . import plots
from .html_page import Page, table
from .plots_time import bands
from .report_explain import explain_window
from .report_labels import Kinds

__all__ = [
    "KindContext",
    "anomaly_scores",
    "kind_auc",
    "kind_section",
    "kinds_sections",
    "localized_where",
    "ranked_table",
    "ranked_units",
    "scores_section",
    "top_rows",
]


def _attached_scores(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    out = {}
    for name, var in ds.data_vars.items():
        if var.dtype.kind not in "fiu":
            continue
        if var.dims == ("sample",):
            out[f"{name} (attached)"] = var
        elif set(var.dims) == {"sample", "layer"}:
            for layer in var["layer"].values:
                out[f"{name} {layer} (attached)"] = var.sel(layer=layer)
    return out


def anomaly_scores(
    ds: xr.Dataset, reference: Any
) -> tuple[dict[str, xr.DataArray], xr.DataArray]:
    """Per-sample scores by name (hidden-state ones first, then attached ones) and step distance.

    Hidden-state scores per layer: final-state distance, max step distance, max step change.
    """
    final = distance(ds, reference)
    steps = step_distance(ds, reference).compute()
    change = step_change(ds)
    change = change.max([d for d in ("direction", "time") if d in change.dims])
    scores: dict[str, xr.DataArray] = {}
    for layer in ds["layer"].values:
        scores[f"final-state distance {layer}"] = final.sel(layer=layer)
        scores[f"max step distance {layer}"] = steps.sel(layer=layer).max("time")
        scores[f"max step change {layer}"] = change.sel(layer=layer)
    for name, attached in _attached_scores(ds).items():  # not one repeating a score above
        values = attached.values.astype(float)
        if not any(np.allclose(values, np.asarray(v.values, float), equal_nan=True)
                   for v in scores.values()):
            scores[name] = attached
    return {k: v.reset_coords(drop=True).compute() for k, v in scores.items()}, steps


def kind_auc(score: xr.DataArray, k: Kinds, kind: Any = None) -> float:
    """ROC AUC of ``score`` for ``kind`` (default every kind) against the baseline."""
    keep = k.labels.values != k.baseline if kind is None else k.labels.values == kind
    keep = keep | (k.labels.values == k.baseline)
    sub = score.isel(sample=np.flatnonzero(keep))
    return float(roc_auc(sub, k.labels.values[keep] != k.baseline))


def scores_section(page: Page, k: Kinds, scores: dict[str, xr.DataArray], where: str) -> str:
    """The table of ROC AUC per score and kind; returns the best max-step-distance score's layer."""
    page.section("Anomaly scores per kind")
    names = [k.name(kind) for kind in k.kinds]
    page.add(
        "<p class=note>ROC AUC of each score for telling windows of each kind from the "
        f"baseline ({html.escape(k.name(k.baseline))}; 1 = perfect, 0.5 = chance). Hidden-state "
        f"scores are Mahalanobis distances to {html.escape(where)} with a Ledoit-Wolf shrinkage "
        "covariance: of the final state, and the largest over time of the distance of each "
        "step's state (<code>step_distance</code>), and the largest step change "
        "||h<sub>t</sub> - h<sub>t-1</sub>||. Attached scores are per-sample variables of the "
        "dataset (e.g. a reconstruction error).</p>"
    )
    rows, best, best_auc = [], "", -1.0
    for name, score in scores.items():
        overall = kind_auc(score, k)
        per_kind = [f"{kind_auc(score, k, kind):.3f}" for kind in k.kinds]
        rows.append([name, f"{overall:.3f}", *per_kind])
        if name.startswith("max step distance") and overall > best_auc:
            best, best_auc = name.removeprefix("max step distance "), overall
    page.add(table(["score", "all kinds", *names], rows))
    return best


def top_rows(ranked: xr.Dataset, kind: Any, top: int) -> xr.Dataset:
    """The first ``top`` rows of a ranked comparison for one kind (all rows when not per kind)."""
    if "level" in ranked.coords:
        ranked = ranked.isel(rank=np.flatnonzero(ranked["level"].values == str(kind)))
    return ranked.isel(rank=slice(0, top))


def ranked_table(head: xr.Dataset, k: Kinds | None = None) -> str:
    """Rows of a :func:`seqacts.compare` result as a table: unit, d, its size in words, means;
    with ``k``, also d's 95% confidence interval from the group sizes, which tells units apart
    when every effect is "large"."""
    rows = []
    for i in range(head.sizes["rank"]):
        d = float(head["d"][i])
        row = [int(i + 1), plots.unit_name(head.isel(rank=i)), f"{d:+.2f}"]
        if k is not None:
            level = head["level"].values[i] if "level" in head.coords else k.kinds[0]
            n1 = int(np.sum(k.labels.astype(str).values == str(level)))
            lo, hi = d_interval(d, n1, int(np.sum(k.labels.values == k.baseline)))
            row.append(f"[{lo:+.2f}, {hi:+.2f}]")
        rows.append(row + [str(head["magnitude"].values[i]), f"{float(head['mean'][i]):+.3f}",
                           f"{float(head['baseline_mean'][i]):+.3f}"])  # fmt: skip
    ci = ["d 95% CI"] if k is not None else []
    headers = ["rank", "unit", "d", *ci, "effect size", "group mean", "baseline"]
    return table(headers, rows, (1, 3, 4) if ci else (1, 3))


def _mean_over(effect: xr.DataArray, k: Kinds, level: Any) -> xr.DataArray:
    """Mean of an ablation effect over the samples of one level, matched by sample label."""
    samples = k.labels["sample"].values[k.labels.values == level]
    return effect.isel(sample=np.flatnonzero(np.isin(effect["sample"].values, samples))).mean(
        "sample"
    )


def _effect_at(values: xr.DataArray, at: dict[str, Any]) -> xr.DataArray:
    return values.sel({d: v for d, v in at.items() if d in values.dims})


def _ablation_table(
    page: Page, ablation: xr.Dataset, head: xr.Dataset, k: Kinds, kind: Any
) -> None:
    """The ablation effects of the ranked units ``head``; units the scan left out are skipped."""
    effect = ablation["effect"] if "effect" in ablation else None
    per_sample = effect is not None and "sample" in effect.dims
    scanned = {str(v) for v in ablation["layer"].values} if "layer" in ablation.coords else None
    rows = []
    for i in range(head.sizes["rank"]):
        at = {"layer": str(head["layer"].values[i]), "unit": int(head["unit"].values[i])}
        if scanned is not None and at["layer"] not in scanned:
            continue  # a layer the scan did not ablate
        if "direction" in head.coords:
            at["direction"] = str(head["direction"].values[i])
        row = [plots.unit_name(head.isel(rank=i)), f"{float(head['d'][i]):+.2f}",
               str(head["magnitude"].values[i])]  # fmt: skip
        values = []
        if effect is not None and per_sample:
            e = _effect_at(effect, at)
            values += [float(_mean_over(e, k, kind)), float(_mean_over(e, k, k.baseline))]
        if "mean_effect" in ablation:
            values.append(float(_effect_at(ablation["mean_effect"], at)))
        if values and not np.isnan(values).all():  # NaN: a unit the scan did not ablate
            rows.append(row + [f"{v:+.4g}" for v in values])
    headers = ["unit", "localized d", "effect size"]
    if per_sample:
        headers += [f"effect on {k.name(kind)}", f"effect on {k.name(k.baseline)}"]
    if "mean_effect" in ablation:
        headers.append("mean effect")
    page.add(table(headers, rows, (0,)))


def _ablation_top(page: Page, ablation: xr.Dataset, k: Kinds, kind: Any, top: int) -> None:
    if "effect" in ablation and "sample" in ablation["effect"].dims:
        e = _mean_over(ablation["effect"], k, kind)
    elif "mean_effect" in ablation:
        e = ablation["mean_effect"]
    else:
        page.add("<p class=note>The ablation scan holds neither effect nor mean_effect.</p>")
        return
    flat = e.stack(p=[d for d in ("layer", "direction", "unit") if d in e.dims]).dropna("p")
    order = np.argsort(-np.abs(flat.values), kind="stable")[:top]
    rows = [[plots.unit_name(flat.isel(p=i)), f"{float(flat.values[i]):+.4g}"] for i in order]
    page.add(f"<p class=note>The {len(rows)} scanned units whose ablation changes the score "
             f"most for {html.escape(k.name(kind))}:</p>")  # fmt: skip
    page.add(table(["unit", f"ablation effect on {k.name(kind)}"], rows, (0,)))


@dataclass(frozen=True)
class KindContext:
    """What every kind's section reads.

    ``steps`` is the step distance (sample, layer, time), ``best`` the layer whose max step
    distance separates best, ``where`` the steps to localize on (described by ``where_text``),
    ``ranked`` the localized :func:`seqacts.compare` result and ``ablation`` a scan, if any.
    """

    ds: xr.Dataset
    k: Kinds
    steps: xr.DataArray
    best: str
    where: xr.DataArray
    where_text: str
    ranked: xr.Dataset
    ablation: xr.Dataset | None
    top: int
    scores: dict[str, xr.DataArray] = field(default_factory=dict)


def _typical_window(page: Page, ctx: KindContext, kind: Any) -> None:
    """The median-scoring window of ``kind``: heatmap with input and step-distance panels."""
    name, k = ctx.k.name(kind), ctx.k
    members = np.flatnonzero(k.labels.values == kind)
    score = ctx.steps.sel(layer=ctx.best).max("time").values
    order = members[np.argsort(score[members], kind="stable")]
    typical = ctx.ds["sample"].values[order[(order.size - 1) // 2]]
    page.section(f"Typical {name} window", 3)
    panels: list[str | xr.DataArray] = [
        p for p in ("input",) if p in ctx.ds and "time" in ctx.ds[p].dims
    ]
    panels.append(ctx.steps.sel(layer=[ctx.best]).isel(layer=0, drop=True).rename("step_distance"))
    highlight = ctx.where.rename(ctx.where_text)
    fig = plots.heatmap(ctx.ds, typical, ctx.best, panel=panels, highlight=highlight)
    page.figure(
        fig,
        f"example_{name}",
        f"sample {typical}: the median-scoring {name} window (max step distance of "
        f"{ctx.best}, rank {(order.size + 1) // 2} of {order.size}); dashed boxes: "
        f"{ctx.where_text}",
        lead=k.swatch(kind),
    )
    explain_window(page, ctx.ds, typical, ctx.best, ctx.where, name)


def _carrying_units(page: Page, ctx: KindContext, kind: Any, head: xr.Dataset) -> None:
    """The units with the largest localized effect for ``kind``: table and bands over time."""
    name, k = ctx.k.name(kind), ctx.k
    page.section(f"Units that carry {name}", 3)
    base, where_text = html.escape(k.name(k.baseline)), html.escape(ctx.where_text)
    page.add(
        "<p class=note>How far each unit is from normal at each step, |h &minus; mean| / std "
        f"of the {base} windows at that step, averaged over the {where_text} "
        f"steps of each {html.escape(name)} window and compared (Cohen's d) with the same steps "
        f"of the {base} windows. Positive: the unit leaves its normal range, in either "
        "direction; negative: it is calmer than normal. |d| &lt; 0.2 negligible, 0.2 small, "
        "0.5 medium, 0.8 large.</p>"
    )
    if not head.sizes["rank"]:
        page.add(f"<p class=note>No {html.escape(name)} window has a step in "
                 f"{where_text}: nothing to localize.</p>")  # fmt: skip
        return
    page.add(ranked_table(head, k))
    if str(head["magnitude"].values[0]) in ("negligible", "small"):
        page.add(f"<p class=note>No unit responds to {html.escape(name)} with even a medium "
                 "effect at these steps.</p>")  # fmt: skip
    fig = bands(ctx.ds, head.isel(rank=slice(0, 4)), k.labels, levels=[k.baseline, kind],
                baseline=k.baseline, align=ctx.where, var="h_deviation")  # fmt: skip
    page.figure(
        fig,
        f"units_{name}",
        f"top units for {name}: distance from normal, group mean and interquartile band, "
        f"aligned on the first {ctx.where_text} step ({k.name(k.baseline)} windows read at "
        "the same steps)",
    )


def _ablation_part(page: Page, ctx: KindContext, kind: Any, head: xr.Dataset) -> None:
    """The ablation effects on the score of ``head`` and of the units that change it most."""
    name = ctx.k.name(kind)
    page.section(f"Ablation effects for {name}", 3)
    if ctx.ablation is None:
        page.add(
            "<p class=note>No ablation scan given. Pass <code>report(ds, out, model=model, "
            "inputs=x, score=score)</code> to have the report ablate these units, or "
            "<code>ablation=scan</code> with a dataset holding <code>effect</code> (sample, "
            "layer, direction, unit) and <code>mean_effect</code>, to see whether silencing "
            "them changes the anomaly score.</p>"
        )
        return
    scope = ctx.ablation.attrs.get("scope")
    among = f" Scanned: {html.escape(str(scope))}." if scope else ""
    page.add("<p class=note>Change of the score when each unit is ablated: averaged over "
             "the windows of this kind, and over those of the baseline, in the effect "
             "columns; the mean effect column (a precomputed scan's) averages over every "
             "sample, all kinds and the baseline together. First the units above, then the "
             f"units whose ablation changes the score most for this kind.{among}</p>")  # fmt: skip
    if head.sizes["rank"]:
        _ablation_table(page, ctx.ablation, head, ctx.k, kind)
    _ablation_top(page, ctx.ablation, ctx.k, kind, ctx.top)


def kind_section(page: Page, ctx: KindContext, kind: Any) -> None:
    """One kind: its typical window, its localized units over time and their ablation effects."""
    page.section(f"Kind: {ctx.k.name(kind)}")
    _typical_window(page, ctx, kind)
    head = top_rows(ctx.ranked, kind, ctx.top)
    _carrying_units(page, ctx, kind, head)
    _ablation_part(page, ctx, kind, head)


def ranked_units(ranked: xr.Dataset, k: Kinds, top: int) -> dict[str, list[int]]:
    """The units of every kind's top ``top`` localized rows, by layer label (for a scan)."""
    units: dict[str, set[int]] = {}
    for kind in k.kinds:
        head = top_rows(ranked, kind, top)
        for layer, unit in zip(head["layer"].values, head["unit"].values, strict=True):
            units.setdefault(str(layer), set()).add(int(unit))
    return {layer: sorted(us) for layer, us in units.items()}


def localized_where(
    ds: xr.Dataset, k: Kinds, steps: xr.DataArray, best: str, mask: str | None = None
) -> tuple[xr.DataArray, str]:
    """The steps to localize on: the boolean (sample, time) variable ``mask`` or else the
    first one of the dataset (the anomaly mask), else the steps where ``step_distance`` of
    ``best`` exceeds the 99th percentile of the baseline's."""
    for name, var in ds.data_vars.items():
        if mask is not None and name != mask:
            continue
        if set(var.dims) == {"sample", "time"} and (var.dtype == bool or name == mask):
            var = var.astype(bool)
            return var.transpose("sample", "time").reset_coords(drop=True).rename(str(name)), str(name)
    sd = steps.sel(layer=best, drop=True)
    base = sd.isel(sample=np.flatnonzero(k.labels.values == k.baseline)).values
    limit = float(np.nanpercentile(base, 99))
    text = f"step distance > {limit:.3g}"
    return (sd > limit).reset_coords(drop=True).rename(text), text




def kinds_sections(
    page: Page,
    ds: xr.Dataset,
    k: Kinds,
    reference: Any,
    ablation: xr.Dataset | None,
    top: int,
    scan: Callable[[dict[str, list[int]]], xr.Dataset] | None = None,
    mask: str | None = None,
    lead: str | None = None,
) -> KindContext:
    """Scores per kind, then one section per kind.

    With ``scan`` (e.g. a :class:`seqacts.viz.report_scan.ModelScan`), the ablation effects
    shown are those of ``scan(units)`` for the ranked units of every kind. ``mask`` names the
    boolean (sample, time) variable to localize on, ``lead`` an attached score listed first.
    Returns what the sections read (its ``ablation``: the scan used, if any).
    """
    where = ("a separate reference dataset" if isinstance(reference, xr.Dataset)
             else f"the {k.name(k.baseline)} windows (each scored out of fold)")  # fmt: skip
    scores, steps = anomaly_scores(ds, reference)
    if lead is not None:
        scores = {n: v for n, v in scores.items() if n.startswith(f"{lead} ")} | scores
    best = scores_section(page, k, scores, where)
    fig = plots.distance(ds, scores=steps.max("time").assign_attrs(var="h, max over steps"),
                         group=k.labels, baseline=k.baseline)  # fmt: skip
    page.figure(fig, "step_distance", "max step distance per window, by group and layer")
    steps_at, text = localized_where(ds, k, steps, best, mask)
    ranked = compare(ds, k.labels, baseline=k.baseline, where=steps_at, feature="deviation")
    if scan is not None:
        units = ranked_units(ranked, k, top)
        if units:
            scope = f"the top {top} units of each kind ({sum(map(len, units.values()))} units)"
            ablation = scan(units).assign_attrs(scope=scope)
    ctx = KindContext(
        ds=ds.assign(h_deviation=deviation(ds, "h", k.labels.values == k.baseline)),
        k=k, steps=steps, best=best, where=steps_at, where_text=text, ranked=ranked,
        ablation=ablation, top=top, scores=scores,
    )  # fmt: skip
    for kind in k.kinds:
        kind_section(page, ctx, kind)
    return ctx
