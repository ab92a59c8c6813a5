"""The findings a report leads with: per anomaly kind, the best score and its ROC AUC, the
layer and units that carry the kind, and when the state leaves normal relative to the onset.

The same rows go at the top of ``report.html`` and into ``summary.txt`` beside it, which
``seqacts report`` prints, so the console and the page say the same thing in the same order.
Effect sizes carry a 95% confidence interval (Hedges & Olkin's normal approximation of the
standard error of d), which still tells units apart when every ``|d|`` is "large".
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from ..analysis.effect_size import d_interval
from . import plots
from .html_page import table
from .report_kinds import KindContext, kind_auc, top_rows

__all__ = ["HEADERS", "findings", "onset_delay", "summary_html", "summary_text"]

HEADERS = ["kind", "windows", "best score (ROC AUC)", "units that carry it (localized d, 95% CI)",
           "leaves normal vs onset"]  # fmt: skip


def onset_delay(ctx: KindContext, kind: Any) -> str:
    """Median steps from the first masked step of each ``kind`` window to the first step whose
    step distance (of the best layer) exceeds the 99th percentile of the baseline's."""
    k = ctx.k
    if ctx.where_text.startswith("step distance"):
        return "no anomaly mask (--mask): onset unknown"
    sd = ctx.steps.sel(layer=ctx.best).transpose("sample", "time").values
    where = ctx.where.transpose("sample", "time").values.astype(bool)
    base = sd[k.labels.values == k.baseline]
    limit = float(np.nanpercentile(base, 99))
    delays = []
    members = np.flatnonzero(k.labels.values == kind)
    for i in members:
        onset = np.flatnonzero(where[i])
        out = np.flatnonzero(np.nan_to_num(sd[i], nan=-np.inf) > limit)
        if onset.size and out.size:
            delays.append(int(out[0] - onset[0]))
    if not delays:
        return f"never above the baseline's 99th percentile in {members.size} windows"
    med = float(np.median(delays))
    when = "at onset" if med == 0 else f"{abs(med):g} steps {'after' if med > 0 else 'before'} onset"
    return f"{when} (median; {len(delays)} of {members.size} windows, {ctx.best})"


def findings(ctx: KindContext) -> list[list[str]]:
    """One row per kind: see :data:`HEADERS`."""
    k = ctx.k
    n0 = int(np.sum(k.labels.values == k.baseline))
    rows = []
    for kind in k.kinds:
        n1 = int(np.sum(k.labels.values == kind))
        aucs = {name: kind_auc(score, k, kind) for name, score in ctx.scores.items()}
        best = max(aucs, key=lambda n: -1.0 if np.isnan(aucs[n]) else aucs[n]) if aucs else ""
        head = top_rows(ctx.ranked, kind, 3)
        units = []
        for i in range(head.sizes["rank"]):
            d = float(head["d"][i])
            lo, hi = d_interval(d, n1, n0)
            name = plots.unit_name(head.isel(rank=i)).removeprefix(f"[{kind}] ")
            units.append(f"{name} ({d:+.2f} [{lo:+.2f}, {hi:+.2f}])")
        rows.append([k.name(kind), str(n1), f"{best} ({aucs[best]:.3f})" if best else "-",
                     "; ".join(units) or "-", onset_delay(ctx, kind)])  # fmt: skip
    return rows


def summary_html(rows: list[list[str]], baseline: str) -> str:
    """The summary table for the top of the page."""
    return (
        "<h2>Summary</h2><p class=note>Per kind, against "
        f"{html.escape(baseline)}: the score that separates it best (ROC AUC, 1 = perfect), the "
        "three units whose localized deviation from normal is largest, and when the best "
        "layer's state first leaves the baseline's 99th percentile of step distance, relative "
        "to the first anomalous step of the mask.</p>" + table(HEADERS, rows, (0, 2, 3, 4))
    )


def summary_text(rows: list[list[str]], baseline: str) -> str:
    """The same rows as plain text, one block per kind."""
    lines = [f"summary (each kind against {baseline}):"]
    for row in rows:
        lines.append(f"  {row[0]} ({row[1]} windows)")
        lines.extend(f"    {h}: {v}" for h, v in zip(HEADERS[2:], row[2:], strict=True))
    return "\n".join(lines) + "\n"
