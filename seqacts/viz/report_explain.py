"""Report panels explaining one window: input attribution, state gradients, windows like it.

Shown under a kind's typical window when the dataset holds them: ``attribution`` (sample,
time, channel or feature), e.g. :func:`seqacts.input_attribution` of the score attached;
``grad_h`` from ``extract(..., gradients=score)``, of which the layer, direction and steps
where ``|grad_h * h|`` is largest are named; and "windows like this one", the
:func:`seqacts.match` of the window's highlighted span (its anomaly), as small aligned panels.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import xarray as xr

from ..analysis import core as analysis
from ..analysis.windows import match
from ..errors import SeqactsError
from .figure_style import subplots, time_axis
from .html_page import Page

__all__ = ["explain_window", "largest_gradient_effect"]

#: How many of the windows like the typical one are drawn.
MATCHES = 4


def largest_gradient_effect(ds: xr.Dataset, sample: Any) -> tuple[str, str, int, float] | None:
    """``(layer, direction, step, value)`` of the largest ``|grad_h * h|`` of one sample."""
    if "grad_h" not in ds:
        return None
    one = ds.sel(sample=sample)
    effect = abs(one["grad_h"] * one["h"]).max("unit")
    values = np.nan_to_num(effect.transpose("layer", "direction", "time").values, nan=-1.0)
    if values.max() < 0:
        return None
    k, d, t = np.unravel_index(int(values.argmax()), values.shape)
    return (str(ds["layer"].values[k]), str(ds["direction"].values[d]), int(t),
            float(values[k, d, t]))  # fmt: skip


def _feature_dim(attr: xr.DataArray) -> str:
    return next(str(d) for d in attr.dims if d not in ("sample", "time"))


def _figure(ds: xr.Dataset, sample: Any, span: np.ndarray, best: tuple[str, str, int, float] | None):
    """Input, attribution (feature x time) and |grad_h * h| (unit x time), aligned in time."""
    rows = [r for r in ("input", "attribution") if r in ds] + (["grad"] if best else [])
    fig, axes = subplots(len(rows), 1, sharex=True, figsize=(9, 1.2 + 1.7 * len(rows)))
    one = ds.sel(sample=sample)
    t = np.arange(ds.sizes["time"])
    for ax, row in zip(axes[:, 0], rows, strict=True):
        if row == "input":
            inp = one["input"]
            feat = _feature_dim(inp)
            for name in inp[feat].values:
                ax.plot(t, inp.sel({feat: name}).values, lw=1, label=str(name))
            ax.legend(loc="upper left", fontsize="small", ncols=4)
            ax.set_ylabel("input")
        elif row == "attribution":
            attr = one["attribution"]
            feat = _feature_dim(attr)
            vals = attr.transpose(feat, "time").values
            vmax = float(np.nanmax(np.abs(vals))) if np.isfinite(vals).any() else 1.0
            mesh = ax.pcolormesh(t, np.arange(vals.shape[0]), vals, shading="nearest",
                                 cmap="PuOr_r", vmin=-vmax, vmax=vmax)  # fmt: skip
            ax.set_yticks(np.arange(vals.shape[0]), [str(v) for v in attr[feat].values])
            ax.set_ylabel("attribution")
            fig.colorbar(mesh, ax=ax, pad=0.01)
        else:
            assert best is not None
            layer, direction = best[0], best[1]
            sub = analysis.layer(ds, layer).sel(sample=sample)
            if "direction" in sub.dims:
                sub = sub.sel(direction=direction)
            width = int(sub["n_units"])
            effect = abs(sub["grad_h"] * sub["h"]).isel(unit=slice(0, width))
            mesh = ax.pcolormesh(t, np.arange(width), effect.transpose("unit", "time").values,
                                 shading="nearest", cmap="magma")  # fmt: skip
            ax.set_ylabel(f"|grad_h h|\n{layer}")
            fig.colorbar(mesh, ax=ax, pad=0.01)
        for a, b in _runs(span):
            ax.axvspan(a - 0.5, b - 0.5, color="0.5", alpha=0.15, lw=0)
    axes[0, 0].set_title(f"sample {sample}: what made the score", loc="left", fontsize="medium")
    time_axis(axes[-1, 0], ds)
    return fig


def _runs(on: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True steps."""
    edges = np.diff(np.concatenate([[0], on.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _matches(page: Page, ds: xr.Dataset, sample: Any, layer: str, span: np.ndarray,
             name: str) -> None:
    """The windows most like the highlighted span of ``sample`` (LSTMVis select-and-match)."""
    runs = _runs(span)
    if not runs:
        return
    a, b = runs[0]
    try:
        found = match(ds, sample=sample, layer=layer, time=slice(int(a), int(b)), top=MATCHES)
    except SeqactsError as error:
        page.add(f"<p class=note>Windows like this one: {html.escape(str(error))}</p>")
        return
    if not found.sizes["rank"]:
        page.add("<p class=note>Windows like this one: no other window has the units that are "
                 f"on throughout steps {a}-{b - 1} on together.</p>")  # fmt: skip
        return
    n = found.sizes["rank"]
    fig, axes = subplots(1, n, sharey=True, figsize=(2.3 * n, 2.0))
    for ax, r in zip(axes[0], range(n), strict=True):
        s, start, stop = (found[c].values[r] for c in ("sample", "start", "stop"))
        lo, hi = max(int(start) - (b - a), 0), min(int(stop) + (b - a), ds.sizes["time"])
        if "input" in ds:
            inp = ds["input"].sel(sample=s).isel(time=slice(lo, hi))
            ax.plot(np.arange(lo, hi), inp.values, lw=0.8)
        ax.axvspan(int(start) - 0.5, int(stop) - 0.5, color="0.5", alpha=0.2, lw=0)
        label = f" ({found['anomaly'].values[r]})" if "anomaly" in found.coords else ""
        ax.set_title(f"sample {s}{label}\nJaccard {float(found['score'].values[r]):.2f}",
                     fontsize="small")  # fmt: skip
    page.figure(fig, f"matches_{name}",
                f"windows like this one: the {n} windows whose units on together best match "
                f"those on throughout steps {a}-{b - 1} of sample {sample} in {layer} "
                "(seqacts.match; shaded: the matched steps)")  # fmt: skip


def explain_window(page: Page, ds: xr.Dataset, sample: Any, layer: str, span: xr.DataArray,
                   name: str) -> None:
    """The explanation panels of one window, when ``ds`` holds attribution or gradients."""
    if "attribution" not in ds and "grad_h" not in ds:
        return
    on = np.asarray(span.sel(sample=sample).values, dtype=bool)
    best = largest_gradient_effect(ds, sample)
    page.figure(_figure(ds, sample, on, best), f"explain_{name}", _caption(ds, sample, best))
    _matches(page, ds, sample, layer, on, name)


def _caption(ds: xr.Dataset, sample: Any, best: tuple[str, str, int, float] | None) -> str:
    parts = []
    if "attribution" in ds:
        attr = ds["attribution"].sel(sample=sample)
        feat = _feature_dim(attr)
        flat = np.nan_to_num(np.abs(attr.transpose("time", feat).values))
        t, f = np.unravel_index(int(flat.argmax()), flat.shape)
        method = ds["attribution"].attrs.get("method", "attribution")
        parts.append(f"input attribution ({method}); most attributed: step {t}, "
                     f"{attr[feat].values[f]}")  # fmt: skip
    if best is not None:
        parts.append(f"|grad_h * h| largest in {best[0]} ({best[1]}) at step {best[2]} "
                     f"({best[3]:.3g})")  # fmt: skip
    return "; ".join(parts) + "; shaded: the highlighted steps"
