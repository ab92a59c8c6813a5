"""When the hidden state leaves normal: the Mahalanobis distance of every step's state.

:func:`step_distance` fits a Gaussian (Ledoit-Wolf shrinkage) to the states of reference
samples over all their valid steps, per layer, and scores each step of each sample against it.
Its maximum over time is a per-window anomaly score, its ``argmax`` says when. The reference is
read once, as chunked sums (:class:`seqacts.analysis.mahalanobis.Moments`), and the scores stay lazy on a
Dask-backed dataset.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from ..errors import ReferenceSetError
from .core import CELL_WIDTH_VARS, MissingVariableError, computed, require
from .mahalanobis import Gaussian, Moments, fold_ids, reference_set

__all__ = ["layer_steps", "step_distance"]

_DIMS = ("sample", "time")


def layer_steps(ds: xr.Dataset, var: str, name: Hashable) -> xr.DataArray:
    """One layer's per-step states as ``(sample, time, feature)``, padding removed or NaN.

    ``feature`` runs over the layer's directions and valid units (both directions of a
    bidirectional layer concatenated); steps past a sample's length are NaN.
    """
    da = ds[var].sel(layer=name)
    sub = ds.sel(layer=name)
    width = "n_cell_units" if var in CELL_WIDTH_VARS else "n_units"
    if width in sub.coords:
        da = da.isel(unit=slice(0, int(sub[width])))
    if "direction" not in da.dims:
        da = da.expand_dims(direction=["forward"])
    elif "n_directions" in sub.coords:
        da = da.isel(direction=slice(0, int(sub["n_directions"])))
    x = da.stack(feature=("direction", "unit")).transpose(*_DIMS, "feature")
    x = x.drop_vars(["feature", "direction", "unit"], errors="ignore")
    if "length" in sub.coords:
        x = x.where(xr.DataArray(np.arange(x.sizes["time"]), dims="time") < sub["length"])
    return x


def _moments(x: xr.DataArray, weights: xr.DataArray) -> list[Moments]:
    """One :class:`Moments` per column of ``weights`` (dims ``sample, fit``), in one pass."""
    rows = x.notnull().all("feature") * weights
    x0 = x.fillna(0.0)
    a = (x0**2).sum("feature")
    sums = xr.Dataset(
        {
            "n": rows.sum(_DIMS),
            "s1": xr.dot(x0, rows, dim=_DIMS),
            "s2": xr.dot(x0, x0.rename(feature="feature2"), rows, dim=_DIMS),
            "s3": xr.dot(a * x0, rows, dim=_DIMS),
            "s4": xr.dot(a**2, rows, dim=_DIMS),
            "sa": xr.dot(a, rows, dim=_DIMS),
        }
    )
    sums = computed(sums.transpose("fit", ...))
    return [
        Moments(
            float(sums["n"][k]),
            sums["s1"].values[k],
            sums["s2"].values[k],
            sums["s3"].values[k],
            float(sums["s4"][k]),
            float(sums["sa"][k]),
        )
        for k in range(sums.sizes["fit"])
    ]


def _score_steps(x: np.ndarray, which: np.ndarray, fits: Sequence[Gaussian]) -> np.ndarray:
    which = np.broadcast_to(which, x.shape[:-1])
    out = np.full(x.shape[:-1], np.nan)
    for k in np.unique(which):
        rows = which == k
        out[rows] = fits[int(k)].score(x[rows])
    return out


def _fits(
    x: xr.DataArray,
    ref: xr.DataArray | None,
    mask: np.ndarray | None,
    shrinkage: float | None,
    folds: int,
) -> tuple[list[Gaussian], np.ndarray]:
    """Gaussians to score with and, per sample of ``x``, the index of the one it uses.

    The last fit uses every reference sample; with a mask and ``folds >= 2`` fit ``k`` leaves
    out fold ``k`` of the reference samples, which are scored by it (out of fold).
    """
    n = x.sizes["sample"]
    if ref is not None or mask is None:
        source = x if ref is None else ref
        ones = xr.DataArray(np.ones((source.sizes["sample"], 1)), dims=("sample", "fit"))
        return [_fit(_moments(source, ones)[0], shrinkage)], np.zeros(n, dtype=np.int64)
    idx = np.flatnonzero(mask)
    k = folds if folds >= 2 else 1
    onehot = np.zeros((n, k))
    onehot[idx, fold_ids(idx.size, k)] = 1.0
    parts = _moments(x, xr.DataArray(onehot, dims=("sample", "fit")))
    total = sum(parts[1:], start=parts[0])
    full = _fit(total, shrinkage)
    which = np.full(n, k if k >= 2 else 0, dtype=np.int64)
    if k < 2:
        return [full], which
    which[idx] = fold_ids(idx.size, k)
    fits = [_fit(total - part, shrinkage) if (total - part).n >= 2 else full for part in parts]
    return [*fits, full], which


def _fit(moments: Moments, shrinkage: float | None) -> Gaussian:
    if moments.n < 2:
        raise ReferenceSetError(
            f"step_distance: need >= 2 valid reference steps, got {int(moments.n)}; pass a "
            "reference with recorded steps, e.g. reference=~ds.is_anomaly"
        )
    return moments.fit(shrinkage)


def _score_layer(x: xr.DataArray, fits: list[Gaussian], which: np.ndarray) -> xr.DataArray:
    """Each step's distance under the fit ``which`` picks per sample (lazy when ``x`` is)."""
    which_da = xr.DataArray(which, dims="sample")
    if x.chunks is not None:
        which_da = which_da.chunk({"sample": x.chunksizes["sample"]})
    return xr.apply_ufunc(
        _score_steps,
        x,
        which_da,
        kwargs={"fits": fits},
        input_core_dims=[["feature"], []],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"allow_rechunk": True},
    )


def step_distance(
    ds: xr.Dataset,
    reference: xr.Dataset | str | xr.DataArray | Sequence[bool],
    *,
    var: str = "h",
    shrinkage: float | None = None,
    folds: int = 5,
) -> xr.DataArray:
    """Mahalanobis distance of each step's state to the reference samples' states, per layer.

    The reference distribution pools every valid step of every reference sample; both
    directions of a bidirectional layer form one vector of its valid units. The covariance is
    shrunk towards a multiple of the identity (Ledoit-Wolf unless ``shrinkage`` is given).
    ``.max("time")`` is a per-window anomaly score and ``.argmax("time")`` the step where the
    state was furthest from normal.

    Parameters
    ----------
    ds : xarray.Dataset
        The samples to score (in memory or Dask-backed).
    reference : xarray.Dataset or boolean mask along sample
        Known-normal samples: another dataset with the same layers, or a mask (or the name of
        a boolean coordinate) selecting them in ``ds``, e.g. ``~ds.is_anomaly``.
    var : str
        The per-step variable (``"h"``; ``"c"`` or a gate with internals).
    shrinkage : float, optional
        Fixed shrinkage in [0, 1] instead of the Ledoit-Wolf estimate.
    folds : int
        With a mask, the steps of reference samples in fold ``k`` are scored by a Gaussian
        fitted on the other folds, so their scores are not biased low by having been fitted;
        ``folds < 2`` scores them in-sample.

    Returns
    -------
    xarray.DataArray
        ``step_distance``, dims ``sample, layer, time``; NaN past each sample's length;
        coordinate ``shrinkage`` along ``layer`` (of the fit on the whole reference). Lazy when
        ``ds`` is Dask-backed: only the reference's sums are computed.
    """
    require(ds, var, "step_distance")
    if "time" not in ds[var].dims:
        raise MissingVariableError(
            f"step_distance: {var!r} has no time dimension; pass a per-step variable such as "
            "'h', or use seqacts.distance for final states"
        )
    names = list(ds["layer"].values)
    if isinstance(reference, xr.Dataset):
        require(reference, var, "step_distance reference")
    ref_ds, mask = reference_set(ds, reference, names)
    if mask is not None and not mask.any():
        raise ReferenceSetError(
            "step_distance: the reference mask selects no sample; pass the known-normal "
            "samples, e.g. reference=~ds.is_anomaly"
        )
    parts, shrinks = [], []
    for name in names:
        x = layer_steps(ds, var, name)
        ref = layer_steps(ref_ds, var, name) if ref_ds is not None else None
        if ref is not None and ref.sizes["feature"] != x.sizes["feature"]:
            raise ReferenceSetError(
                f"reference: layer {name} has {ref.sizes['feature']} state values per step, "
                f"ds has {x.sizes['feature']}; use a dataset of the same model"
            )
        fits, which = _fits(x, ref, mask, shrinkage, folds)
        parts.append(_score_layer(x, fits, which))
        shrinks.append(fits[-1].shrinkage)
    out = xr.concat(parts, dim="layer", coords="different", compat="equals", join="outer")
    out = out.transpose("sample", "layer", "time")
    out = out.assign_coords(layer=names, shrinkage=("layer", shrinks))
    out.name = "step_distance"
    out.attrs = {
        "long_name": "step distance",
        "description": f"Mahalanobis distance of each step's {var} to the reference steps",
        "var": var,
    }
    return out
