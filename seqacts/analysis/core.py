"""Per-layer analyses of a recorded dataset: padding masks, saturation, dead units, summaries.

Every function takes the Dataset that :func:`seqacts.extract` returns (or a subset of it, e.g.
``ds.sel(layer=[...])`` or ``ds.isel(sample=slice(0, 10))``) and works on NaN-padded,
variable-length, bidirectional and Dask-backed data alike: validity comes from the ``length``,
``n_units``, ``n_cell_units`` and ``n_directions`` coordinates, never from positions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import xarray as xr

from ..errors import LayerSelectionError, MissingVariableError, OptionError, RecordingWarning
from ..kinds import find_kind, tanh_bounded_kinds
from ..schema import CELL_STATE_VARS, CELL_WIDTH_VARS, SIGMOID_GATES

__all__ = [
    "HIGH",
    "LOW",
    "MissingVariableError",
    "left_out",
    "TOL",
    "dead_units",
    "layer",
    "masked",
    "require",
    "saturation",
    "step_change",
    "valid",
]

#: Variables that exist only for LSTM layers besides the LSTM internals.
LSTM_STATE_VARS: tuple[str, ...] = CELL_STATE_VARS
SAMPLE_TIME = ("sample", "time")
#: Default saturation thresholds (Karpathy et al., 2015) and constant-unit tolerance: every
#: function, method and plot that takes them uses these.
LOW, HIGH, TOL = 0.1, 0.9, 1e-5

_T = TypeVar("_T", xr.Dataset, xr.DataArray)


def computed(obj: _T) -> _T:
    """``obj.compute()`` without NumPy's warnings about all-NaN padding slices."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return obj.compute()


def _position(ds: xr.Dataset | xr.DataArray, dim: str) -> xr.DataArray:
    return xr.DataArray(np.arange(ds.sizes[dim]), dims=dim)


def _is_schema_var(da: xr.DataArray) -> bool:
    return "unit" in da.dims and ("layer" in da.dims or "layer" in da.coords)


def valid(ds: xr.Dataset, name: str) -> xr.DataArray | None:
    """Where variable ``name`` holds a recorded value (True) rather than padding (False).

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset or a subset of one.
    name : str
        A variable of ``ds`` such as ``"h"``, ``"forget_gate"`` or ``"h_n"``.

    Returns
    -------
    xarray.DataArray or None
        Boolean, broadcastable against ``ds[name]``: timesteps before the sample's ``length``,
        units below the layer's width, directions the layer has, samples whose states are
        finite in that layer (``nonfinite == 0``). ``None`` when ``ds[name]`` is not a
        per-unit variable of the schema (e.g. a user-attached input).
    """
    da = ds[name]
    if not _is_schema_var(da):
        return None
    mask = xr.DataArray(True)
    if "time" in da.dims and "length" in ds.coords:
        mask = mask & (_position(da, "time") < ds["length"])
    width = "n_cell_units" if name in CELL_WIDTH_VARS else "n_units"
    if width in ds.coords:
        mask = mask & (_position(da, "unit") < ds[width])
    if "direction" in da.dims and "n_directions" in ds.coords:
        mask = mask & (_position(da, "direction") < ds["n_directions"])
    if "nonfinite" in ds.coords and "sample" in da.dims:
        mask = mask & (ds["nonfinite"] == 0)
    return mask


def masked(ds: xr.Dataset, name: str = "h") -> xr.DataArray:
    """``ds[name]`` with every padded position set to NaN (lazy on Dask-backed data).

    Padding is every position :func:`valid` marks False: timesteps past a sample's
    ``length``, units past a layer's width, the backward direction of a unidirectional layer.
    Reductions of the result (``.mean("time")``, ``.std(["sample", "time"])``) then skip it.
    Samples with non-finite states (the ``nonfinite`` coordinate) are left out too, with a
    warning saying how many.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset or a subset of one.
    name : str, default "h"
        The variable, e.g. ``"h"``, ``"c"``, ``"forget_gate"`` or ``"h_n"``.

    Returns
    -------
    xarray.DataArray
        ``ds[name]``'s dims (e.g. ``sample, layer, direction, time, unit`` for ``h``);
        unchanged for a variable that is not per-unit (e.g. a user-attached input).
    """
    left_out(ds, "seqacts analyses")
    mask = valid(ds, name)
    return ds[name] if mask is None else ds[name].where(mask)


def require(ds: xr.Dataset, name: str, analysis: str) -> None:
    if name not in ds:
        raise MissingVariableError(
            f"{analysis}: the dataset has no variable {name!r}; variables: "
            f"{', '.join(map(str, ds.data_vars))}"
        )


def present_dims(da: xr.DataArray, dims: Sequence[str]) -> list[str]:
    """The names in ``dims`` that ``da`` has, in that order (reductions over optional dims)."""
    return [d for d in dims if d in da.dims]


def layer(ds: xr.Dataset, name: str) -> xr.Dataset:
    """One layer's data with the padding that other layers forced on it removed.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset.
    name : str
        A value of the ``layer`` coordinate, e.g. ``"encoder.l0"``.

    Returns
    -------
    xarray.Dataset
        Dims ``sample, [direction,] time, unit``: units trimmed to the layer's width (the cell
        width when the dataset holds cell-wide variables and ``proj_size > 0``), time trimmed to
        its longest sample, ``direction`` dropped when the layer is unidirectional, and
        variables of other layer kinds (e.g. GRU gates in an LSTM layer) dropped.
    """
    names = [str(v) for v in ds["layer"].values]
    if name not in names:
        raise LayerSelectionError(f"layer: no layer {name!r}; available: {', '.join(names)}")
    sub = ds.sel(layer=name)
    spec = find_kind(str(sub["kind"].values)) if "kind" in sub.coords else None
    if spec is not None:  # a kind this process does not know keeps every variable
        other = set(CELL_WIDTH_VARS) - set(spec.internals)
        if spec.has_cell_state:
            other -= set(LSTM_STATE_VARS)
        sub = sub.drop_vars([v for v in other if v in sub.data_vars])
    width = int(sub["n_units"]) if "n_units" in sub.coords else sub.sizes["unit"]
    if "n_cell_units" in sub.coords and any(v in CELL_WIDTH_VARS for v in sub.data_vars):
        width = max(width, int(sub["n_cell_units"]))
    sub = sub.isel(unit=slice(0, width))
    if "length" in sub.coords and "time" in sub.dims:
        sub = sub.isel(time=slice(0, int(sub["length"].max())))
    if "direction" in sub.dims and "n_directions" in sub.coords and int(sub["n_directions"]) == 1:
        sub = sub.isel(direction=0, drop=True)
    return sub


def saturation(ds: xr.Dataset, low: float = LOW, high: float = HIGH) -> xr.Dataset:
    """Left/right saturation fractions of every sigmoid gate (Karpathy et al., 2015).

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset recorded with ``internals=True``.
    low, high : float
        A gate value below ``low`` counts as left-saturated, above ``high`` as right-saturated.

    Returns
    -------
    xarray.Dataset
        ``left``, ``right`` (fractions of valid sample-time points) and ``count`` (the number of
        valid points), dims ``gate, layer, direction, unit``; NaN where a layer has no such gate
        or unit. Gates: the sigmoid gates present (input/forget/output, reset/update).
    """
    if not 0.0 <= low < high <= 1.0:
        raise OptionError(
            f"saturation: need 0 <= low < high <= 1, got low={low}, high={high}; e.g. low=0.1, "
            "high=0.9"
        )
    gates = [g for g in SIGMOID_GATES if g in ds]
    if not gates:
        raise MissingVariableError(
            "saturation: the dataset has no gate activations (input_gate, forget_gate, "
            "output_gate, reset_gate, update_gate); record with internals=True, e.g. "
            "seqacts.extract(model, x, internals=True)"
        )
    parts = []
    for gate in gates:
        v = masked(ds, gate)
        dims = present_dims(v, SAMPLE_TIME)
        count = v.notnull().sum(dims)
        total = count.where(count > 0)
        parts.append(
            xr.Dataset(
                {
                    "left": (v < low).sum(dims) / total,
                    "right": (v > high).sum(dims) / total,
                    "count": count,
                }
            )
        )
    out = xr.concat(parts, dim=xr.DataArray(gates, dims="gate", name="gate"))
    out.attrs = {"low": low, "high": high}
    return computed(out)


def dead_units(
    ds: xr.Dataset, *, tol: float = TOL, level: float = 0.99, fraction: float = 0.99
) -> xr.Dataset:
    """Units whose hidden state never varies or sits saturated at +-1 almost everywhere.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset.
    tol : float
        A unit is constant when the standard deviation of ``h`` over all valid sample-time
        points is at most ``tol``.
    level, fraction : float
        A unit is saturated when ``|h| >= level`` on at least ``fraction`` of its valid points.
        Only for layers whose ``h`` is tanh-bounded (not ReLU RNNs, not projected LSTMs).

    Returns
    -------
    xarray.Dataset
        Dims ``layer, direction, unit``: ``dead`` = ``constant | saturated`` (bool, False on
        padding), ``constant``, ``saturated``, ``std`` and ``saturated_fraction``.
    """
    require(ds, "h", "dead_units")
    h = masked(ds, "h")
    dims = present_dims(h, SAMPLE_TIME)
    count = h.count(dims)
    std = h.std(dims)
    sat = (abs(h) >= level).sum(dims) / count.where(count > 0)
    bounded = abs(h).max([d for d in h.dims if d != "layer"]) <= 1.0 + 1e-6
    if "kind" in ds.coords:
        bounded = bounded & ds["kind"].isin(sorted(tanh_bounded_kinds()))
    if "n_cell_units" in ds.coords and "n_units" in ds.coords:
        bounded = bounded & (ds["n_units"] == ds["n_cell_units"])
    has_data = count > 0
    constant = (std <= tol) & has_data
    saturated = (sat >= fraction) & bounded & has_data
    out = xr.Dataset(
        {
            "dead": constant | saturated,
            "constant": constant,
            "saturated": saturated,
            "std": std,
            "saturated_fraction": sat,
        }
    )
    out.attrs = {"tol": tol, "level": level, "fraction": fraction}
    return computed(out)


def step_change(ds: xr.Dataset) -> xr.DataArray:
    """How far the hidden state moves at each step: ``||h_t - h_prev||`` over units.

    ``h_prev`` is the state before the layer consumed input step ``t`` in its own processing
    order: ``h_{t-1}`` forward (``h_0`` at ``t = 0``), ``h_{t+1}`` backward (``h_0`` of the
    backward direction at the sample's last step).

    Returns
    -------
    xarray.DataArray
        ``step_change``, dims ``sample, layer, direction, time``; NaN past each sample's
        length and for missing directions. Lazy on Dask-backed data.
    """
    require(ds, "h", "step_change")
    h = masked(ds, "h")
    t = _position(h, "time")
    h0 = masked(ds, "h_0") if "h_0" in ds else xr.full_like(h.isel(time=0), np.nan)
    prev = h.shift(time=1).where(t != 0, h0)
    if "direction" in h.dims and "backward" in h["direction"].values:
        last = ds["length"] - 1 if "length" in ds.coords else h.sizes["time"] - 1
        prev_back = h.shift(time=-1).where(t != last, h0)
        prev = xr.where(h["direction"] == "backward", prev_back, prev)
    norm = ((h - prev) ** 2).sum("unit", min_count=1) ** 0.5
    mask = valid(ds, "h")
    if mask is not None:
        norm = norm.where(mask.any("unit") if "unit" in mask.dims else mask)
    norm.name = "step_change"
    norm.attrs = {"long_name": "step change", "description": "||h_t - h_prev|| over units"}
    return norm


def left_out(ds: xr.Dataset, what: str | None = None) -> int:
    """How many samples have non-finite states (analyses leave them out); warn naming ``what``."""
    if "nonfinite" not in ds.coords or "sample" not in ds["nonfinite"].dims:
        return 0
    bad = ds["nonfinite"] > 0
    others = [d for d in bad.dims if d != "sample"]
    n = int(bad.any(others).sum()) if others else int(bad.sum())
    if n and what:
        warnings.warn(
            f"{what}: {n} sample(s) with non-finite states (NaN/Inf, see the 'nonfinite' "
            "coordinate) are left out of the statistics", RecordingWarning, stacklevel=3)
    return n
