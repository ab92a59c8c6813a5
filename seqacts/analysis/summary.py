"""Per-layer summary of a recorded dataset, as a small Dataset and as a printed table."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..schema import SIGMOID_GATES
from .core import (
    HIGH,
    LOW,
    TOL,
    MissingVariableError,
    computed,
    dead_units,
    left_out,
    masked,
    present_dims,
    require,
)

__all__ = ["format_table", "summary", "summary_rows", "summary_table"]

SUMMARY_HEADERS = (
    "layer", "kind", "width", "dirs", "steps", "h mean", "h std", "c mean", "c std",
    "saturated", "dead units",
)  # fmt: skip


def _layer_mean_std(da: xr.DataArray) -> tuple[xr.DataArray, xr.DataArray]:
    dims = [d for d in da.dims if d != "layer"]
    return da.mean(dims), da.std(dims)


def _saturated_fraction(ds: xr.Dataset, low: float, high: float) -> xr.DataArray | None:
    hits: xr.DataArray | int = 0
    total: xr.DataArray | int = 0
    for gate in (g for g in SIGMOID_GATES if g in ds):
        v = masked(ds, gate)
        dims = [d for d in v.dims if d != "layer"]
        hits = hits + ((v < low) | (v > high)).sum(dims)
        total = total + v.notnull().sum(dims)
    if isinstance(total, int):
        return None
    return hits / total.where(total > 0)


def summary(
    ds: xr.Dataset, *, low: float = LOW, high: float = HIGH, tol: float = TOL
) -> xr.Dataset:
    """One row per layer: width, statistics of ``h`` and ``c``, saturation, dead units, steps.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset (with a ``layer`` dimension).
    low, high : float
        Saturation thresholds, see :func:`saturation`.
    tol : float
        Constant-unit tolerance, see :func:`dead_units`.

    Returns
    -------
    xarray.Dataset
        Dim ``layer``: ``width``, ``cell_width``, ``directions``, ``samples``, ``steps`` (valid
        steps summed over samples), ``max_length``, ``h_mean``, ``h_std``, ``c_mean``,
        ``c_std`` (NaN for non-LSTM layers or without internals), ``saturated`` (fraction of
        sigmoid-gate values below ``low`` or above ``high``; NaN without internals) and
        ``dead_units`` (over both directions); coordinate ``kind``. :func:`summary_table`
        prints it.
    """
    require(ds, "h", "summary")
    for name in ("layer", "length", "n_units", "n_cell_units", "n_directions"):
        if name not in ds.coords:
            raise MissingVariableError(
                f"summary: the dataset lacks the {name!r} coordinate of the seqacts schema; "
                "pass a dataset from seqacts.extract (select layers with ds.sel(layer=[...]))"
            )
    h_mean, h_std = _layer_mean_std(masked(ds, "h"))
    nan = xr.full_like(h_mean, np.nan)
    c_mean, c_std = _layer_mean_std(masked(ds, "c")) if "c" in ds else (nan, nan)
    saturated = _saturated_fraction(ds, low, high)
    length = ds["length"]
    dead = dead_units(ds, tol=tol)["dead"]
    out = xr.Dataset(
        {
            "width": ds["n_units"],
            "cell_width": ds["n_cell_units"],
            "directions": ds["n_directions"],
            "samples": xr.full_like(ds["n_units"], ds.sizes.get("sample", 1)),
            "steps": length.sum(present_dims(length, ("sample",))),
            "max_length": length.max(present_dims(length, ("sample",))),
            "h_mean": h_mean,
            "h_std": h_std,
            "c_mean": c_mean,
            "c_std": c_std,
            "saturated": nan if saturated is None else saturated,
            "dead_units": dead.sum(present_dims(dead, ("direction", "unit"))),
        }
    ).reset_coords(drop=True)
    if "kind" in ds.coords:
        out = out.assign_coords(kind=ds["kind"])
    out.attrs = {"low": low, "high": high, "tol": tol, "samples_left_out": left_out(ds)}
    return computed(out)


def _fmt(value: object, spec: str = ".3f") -> str:
    if isinstance(value, (float, np.floating)):
        return "-" if np.isnan(value) else format(value, spec)
    return str(value)


NUMBER = re.compile(r"^([-+]?[\d.]+(e[-+]?\d+)?%?|-|\d+/\d+|\d+ \(cell \d+\))$")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Align rows under ``headers``: numeric columns right-aligned, text columns left-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [i > 0 and all(NUMBER.match(r[i]) for r in cells[1:]) for i in range(len(headers))]
    lines = []
    for k, row in enumerate(cells):
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_rows(table: xr.Dataset) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows of a :func:`summary` result (for text and HTML tables)."""
    headers = list(SUMMARY_HEADERS)
    rows = []
    for name in table["layer"].values:
        r = table.sel(layer=name)
        kind = str(r["kind"].values) if "kind" in r.coords else "-"
        width = f"{int(r['width'])}"
        if not np.isnan(float(r["cell_width"])) and int(r["cell_width"]) != int(r["width"]):
            width += f" (cell {int(r['cell_width'])})"
        sat = float(r["saturated"])
        rows.append(
            [
                str(name),
                kind,
                width,
                str(int(r["directions"])),
                str(int(r["steps"])),
                _fmt(float(r["h_mean"])),
                _fmt(float(r["h_std"])),
                _fmt(float(r["c_mean"])),
                _fmt(float(r["c_std"])),
                "-" if np.isnan(sat) else f"{sat:.1%}",
                f"{int(r['dead_units'])}/{int(r['width']) * int(r['directions'])}",
            ]
        )
    return headers, rows


def summary_table(
    ds: xr.Dataset, *, low: float = LOW, high: float = HIGH, tol: float = TOL
) -> str:
    """:func:`summary` as a plain-text table, one line per layer.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset (with a ``layer`` dimension).
    low, high, tol : float
        As in :func:`summary`.

    Returns
    -------
    str
        A header line (samples, layers) and one aligned row per layer.
    """
    table = summary(ds, low=low, high=high, tol=tol)
    headers, rows = summary_rows(table)
    n = int(table["samples"].max()) if table.sizes["layer"] else 0
    return f"{n} samples, {table.sizes['layer']} layers\n" + format_table(headers, rows)
