"""Contrasts between groups of samples and anomaly scores from a model's own hidden states.

:func:`compare` ranks units by how differently they respond to two groups of samples (Cohen's
d); :func:`distance` scores each sample by the Mahalanobis distance of its final hidden state to
a reference set, with a Ledoit-Wolf shrinkage covariance so it works with fewer samples than
units; :func:`roc_auc` says how well a score separates two groups.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import GroupError, OptionError, ReferenceSetError
from .core import MissingVariableError, computed, masked, require, valid
from .effect_size import magnitude
from .groups import group_labels, split_levels
from .localized import deviation, localized_features, mask_name
from .mahalanobis import Gaussian, fit_rows, fold_ids, ledoit_wolf, reference_set

__all__ = [
    "FEATURES",
    "compare",
    "distance",
    "final_state",
    "group_labels",
    "ledoit_wolf",
    "roc_auc",
    "sample_feature",
]

#: Per-sample reductions over valid time that :func:`compare` accepts as ``feature``.
FEATURES: dict[str, str] = {
    "mean": "mean over valid time",
    "std": "standard deviation over valid time",
    "max": "maximum over valid time",
    "min": "minimum over valid time",
    "last": "value at the direction's last processed step (the final state)",
}


def final_state(ds: xr.Dataset, var: str = "h") -> xr.DataArray:
    """Each sample's last processed value of a per-step variable, per layer and direction.

    The forward direction's value at step ``length - 1`` (each sample's own length, so padding
    is never read), the backward direction's at step 0. For ``"h"`` this equals ``h_n``; for a
    gate or ``c`` it is the value the layer ended on, which the recording has no ``_n`` for.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset (with the ``length`` coordinate).
    var : str, default "h"
        A per-step variable: ``"h"``, ``"c"``, a gate or ``"preactivation"``.

    Returns
    -------
    xarray.DataArray
        Dims ``sample, layer, direction, unit``; NaN where a sample has no valid step.
    """
    require(ds, var, "final_state")
    v = masked(ds, var)
    if "length" not in ds.coords:
        raise MissingVariableError("final_state: needs the 'length' coordinate of the schema")
    last = v.isel(time=(ds["length"] - 1).clip(min=0))
    if "direction" in v.dims:
        last = xr.where(v["direction"] == "backward", v.isel(time=0), last)
    last = last.where(ds["length"] > 0).drop_vars("time", errors="ignore")
    return last.transpose(*[d for d in v.dims if d != "time"])


def sample_feature(
    ds: xr.Dataset, feature: str | xr.DataArray = "mean", var: str = "h"
) -> xr.DataArray:
    """One value per sample, layer, direction and unit, as :func:`compare` contrasts.

    Parameters
    ----------
    feature : str or xarray.DataArray
        A reduction of ``var`` over valid time (see ``FEATURES``), the name of a variable
        without a time dimension (``"h_n"``, ``"c_n"``), or a ready DataArray.
    var : str
        The per-step variable a reduction applies to (``"h"``, ``"c"``, a gate).

    Returns
    -------
    xarray.DataArray
        Dims ``sample, layer, direction, unit``.
    """
    if isinstance(feature, xr.DataArray):
        return feature
    if feature in ds.data_vars and "time" not in ds[feature].dims:
        return masked(ds, feature)
    if feature == "last":
        return final_state(ds, var)
    if feature not in FEATURES:
        states = [str(v) for v in ds.data_vars if "time" not in ds[v].dims and "unit" in ds[v].dims]
        raise OptionError(
            f"feature: expected one of {', '.join(FEATURES)} or a state variable "
            f"({', '.join(states)}), got {feature!r}"
        )
    require(ds, var, "compare")
    return getattr(masked(ds, var), feature)("time")


def _group_stats(x: xr.DataArray, mask: np.ndarray) -> tuple[xr.DataArray, ...]:
    sub = x.isel(sample=np.flatnonzero(mask))
    return sub.count("sample"), sub.mean("sample"), sub.var("sample", ddof=1)


def _cohens_d(x: xr.DataArray, tested: np.ndarray, base: xr.DataArray,
              baseline: np.ndarray) -> xr.Dataset:
    """Cohen's d of the ``tested`` samples of ``x`` against the ``baseline`` samples of ``base``
    per unit, with the means and pooled standard deviation it comes from."""
    n0, m0, v0 = _group_stats(base, baseline)
    n1, m1, v1 = _group_stats(x, tested)
    pooled = (((n1 - 1) * v1 + (n0 - 1) * v0) / (n1 + n0 - 2)) ** 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (m1 - m0) / pooled
    return xr.Dataset({"d": d, "mean": m1, "baseline_mean": m0, "pooled_std": pooled})


def _ranked(res: xr.Dataset) -> xr.Dataset:
    """``res`` flattened along ``rank`` by decreasing ``|d|``, undefined entries dropped, with
    each effect's ``magnitude`` in words."""
    dims = [d for d in ("level", "layer", "direction", "unit") if d in res.dims]
    flat = res.stack(rank=dims).reset_index("rank")
    effect = flat["d"].values
    keep = np.flatnonzero(~np.isnan(effect))
    order = keep[np.argsort(-np.abs(effect[keep]), kind="stable")]
    flat = flat.isel(rank=order).assign_coords(rank=np.arange(1, order.size + 1))
    return flat.assign_coords(magnitude=("rank", magnitude(flat["d"].values)))


def compare(
    ds: xr.Dataset,
    group: str | xr.DataArray | Sequence[Any],
    *,
    feature: str | xr.DataArray = "mean",
    var: str = "h",
    baseline: Any = None,
    where: str | xr.DataArray | np.ndarray | None = None,
) -> xr.Dataset:
    """Rank units by Cohen's d between groups of samples (e.g. anomalous vs normal windows).

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset.
    group : str, xarray.DataArray or sequence
        Boolean or categorical labels along ``sample``, or the name of such a coordinate.
    feature : str or xarray.DataArray
        The per-sample value to contrast, see :func:`sample_feature`; default the mean of
        ``var`` over each sample's valid steps. ``"h_n"`` contrasts final states.
        ``"deviation"``: the mean of ``|var - m_t| / s_t``, ``m_t`` and ``s_t`` the baseline
        samples' mean and standard deviation of the unit at step ``t``
        (:func:`seqacts.analysis.localized.deviation`): a unit that leaves normal in either direction
        scores high, also when the sign of the departure differs between samples.
    var : str
        Per-step variable to reduce (``"h"``; ``"c"`` or a gate with internals).
    baseline : optional
        The group the others are contrasted with; default ``False``/``0`` for binary labels,
        else ``"normal"`` when that is a label, else the most frequent label.
    where : str, xarray.DataArray or array, optional
        A boolean mask over ``(sample, time)`` (or the name of such a variable, e.g. an anomaly
        mask, or ``step_distance > threshold``) that localizes the contrast: each tested sample
        contributes the mean of ``var`` over its own masked valid steps, each baseline sample
        the mean over the same steps, weighted by how often the tested group is masked at each
        step (see :func:`seqacts.analysis.localized.localized_features`). With ``feature="mean"`` or
        ``"deviation"``.

    Returns
    -------
    xarray.Dataset
        Dim ``rank`` (1 = largest ``|d|``; padding and undefined entries dropped) with
        coordinates ``layer``, ``direction``, ``unit``, ``magnitude`` (``|d|`` in words:
        negligible < 0.2 <= small < 0.5 <= medium < 0.8 <= large) and ``level`` when more than
        two groups (each level against the baseline): ``d`` = (mean(level) - mean(baseline)) /
        pooled std, ``mean``, ``baseline_mean``, ``pooled_std``. Attributes name the group,
        levels, sizes and the ``where`` mask.
    """
    labels = group_labels(ds, group)
    name = str(labels.name if labels.name is not None else "group")
    baseline, tests = split_levels(labels, baseline)
    values = labels.values
    per_step = isinstance(feature, str) and feature in ("mean", "deviation")
    if where is not None and not per_step:
        raise GroupError(
            f"compare: where= localizes a mean over masked steps; got feature={feature!r} "
            "(use feature='mean' or 'deviation', or drop where=)"
        )
    steps = deviation(ds, var, values == baseline) if feature == "deviation" else None
    x = None
    if where is None:
        x = steps.mean("time") if steps is not None else sample_feature(ds, feature, var)
    parts = []
    for level in tests:
        own, same_steps = (x, x) if x is not None else localized_features(
            ds, where, values == level, var, steps=steps)  # fmt: skip
        parts.append(_cohens_d(own, values == level, same_steps, values == baseline))
    res = xr.concat(parts, dim=xr.DataArray([str(t) for t in tests], dims="level", name="level"))
    res = computed(res.reset_coords(drop=True))
    flat = _ranked(res.isel(level=0, drop=True) if len(tests) == 1 else res)
    counts = pd.Series(values).value_counts()
    flat.attrs = {
        "group": name,
        "baseline": str(baseline),
        "levels": ", ".join(str(t) for t in tests),
        "feature": feature if isinstance(feature, str) else str(feature.name),
        "var": var,
        "where": "" if where is None else mask_name(where),
        **{f"n_{lv}": int(counts[lv]) for lv in [baseline, *tests]},
    }
    return flat


def _state_matrix(ds: xr.Dataset, var: str, name: Hashable | None) -> np.ndarray:
    """(sample, feature) matrix of one layer's final states, padding columns dropped."""
    if var in ds.data_vars and "time" not in ds[var].dims:
        x, mask = masked(ds, var), valid(ds, var)
    else:
        x, mask = final_state(ds, var), valid(ds, var)
    if name is not None:
        x = x.sel(layer=name)
        mask = mask.sel(layer=name) if mask is not None and "layer" in mask.dims else mask
    feature_dims = [d for d in ("direction", "unit") if d in x.dims]
    x = x.transpose("sample", *feature_dims)
    cols = np.ones(x.shape[1:], dtype=bool)
    if mask is not None:
        m = mask.any([d for d in mask.dims if d not in feature_dims])
        cols = m.broadcast_like(x.isel(sample=0, drop=True)).transpose(*feature_dims).values
    return np.asarray(x.values, dtype=np.float64).reshape(x.shape[0], -1)[:, cols.ravel()]


def _scores(x: np.ndarray, ref: np.ndarray, mask: np.ndarray | None, folds: int,
            shrinkage: float | None) -> tuple[np.ndarray, float]:
    """Distances of the rows of ``x`` to the complete rows of ``ref``, and the shrinkage used.

    With ``mask`` (``ref`` being ``x[mask]``) reference rows are scored out of fold.
    """
    ok = ~np.isnan(ref).any(axis=1)
    if ok.sum() < 2:
        raise ReferenceSetError(f"distance: need >= 2 reference samples, got {int(ok.sum())}")
    fit: Gaussian = fit_rows(ref[ok], shrinkage)
    out = fit.score(x)
    if mask is not None:
        idx = np.flatnonzero(mask)[ok]
        fold = fold_ids(idx.size, folds)
        for k in range(folds):
            train = ref[ok][fold != k]
            if train.shape[0] >= 2 and np.any(fold == k):
                out[idx[fold == k]] = fit_rows(train, shrinkage).score(x[idx[fold == k]])
    return out, fit.shrinkage


def distance(
    ds: xr.Dataset,
    reference: xr.Dataset | str | xr.DataArray | Sequence[bool],
    *,
    var: str = "h_n",
    shrinkage: float | None = None,
    folds: int = 5,
) -> xr.DataArray:
    """Mahalanobis distance of each sample's final hidden state to a reference set, per layer.

    Both directions of a bidirectional layer form one vector. The covariance is shrunk towards
    a multiple of the identity (Ledoit-Wolf unless ``shrinkage`` is given), so it is
    well-conditioned with fewer reference samples than units.

    Parameters
    ----------
    ds : xarray.Dataset
        The samples to score.
    reference : xarray.Dataset or boolean mask along sample
        Known-normal samples: another dataset with the same layers, or a mask (or the name of
        a boolean coordinate) selecting them in ``ds``.
    var : str
        ``"h_n"`` (default), ``"c_n"``, or a per-step variable whose final state is used.
    shrinkage : float, optional
        Fixed shrinkage in [0, 1] instead of the Ledoit-Wolf estimate.
    folds : int
        With a mask, reference samples are scored by a covariance fitted on the other
        ``folds - 1`` folds of the reference, so their scores are not biased low by having
        been fitted; ``folds < 2`` scores them in-sample.

    Returns
    -------
    xarray.DataArray
        ``distance``, dims ``sample, layer``; coordinate ``shrinkage`` along ``layer``.
    """
    if var not in ds:
        raise MissingVariableError(f"distance: the dataset has no variable {var!r}")
    names = list(ds["layer"].values) if "layer" in ds.dims else [None]
    ref_ds, mask = reference_set(ds, reference, names if names != [None] else None)
    scores, shrinks = [], []
    for name in names:
        x = _state_matrix(ds, var, name)
        ref = _state_matrix(ref_ds, var, name) if ref_ds is not None else x[mask]
        if ref.shape[1] != x.shape[1]:
            raise ReferenceSetError(
                f"reference: layer {name} has {ref.shape[1]} state values per "
                f"sample, ds has {x.shape[1]}; use a dataset of the same model"
            )
        out, shrunk = _scores(x, ref, mask if folds >= 2 else None, folds, shrinkage)
        scores.append(out)
        shrinks.append(shrunk)
    data = np.stack(scores, axis=1)
    coords: dict[str, Any] = {"sample": ds["sample"].values}
    if names != [None]:
        coords.update(layer=names, shrinkage=("layer", shrinks))
        result = xr.DataArray(data, dims=("sample", "layer"), coords=coords)
    else:
        coords["shrinkage"] = shrinks[0]
        result = xr.DataArray(data[:, 0], dims=("sample",), coords=coords)
    result.name = "distance"
    result.attrs = {"long_name": "Mahalanobis distance", "var": var}
    return result


def _auc(score: np.ndarray, labels: np.ndarray) -> float:
    ok = ~(pd.isna(score) | pd.isna(labels))
    score, labels = score[ok], labels[ok].astype(bool)
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def roc_auc(score: xr.DataArray, labels: xr.DataArray | Sequence[bool]) -> xr.DataArray:
    """Area under the ROC curve of ``score`` for telling ``labels == True`` from the rest.

    Returns
    -------
    xarray.DataArray
        ``score``'s dims without ``sample`` (0-d for a 1-D score): 1 means every positive
        scores above every negative, 0.5 chance. Ties count half.
    """
    labels = (
        labels
        if isinstance(labels, xr.DataArray)
        else xr.DataArray(np.asarray(labels), dims="sample")
    )
    return xr.apply_ufunc(
        _auc,
        score,
        labels.reset_coords(drop=True),
        input_core_dims=[["sample"], ["sample"]],
        vectorize=True,
    ).rename("roc_auc")
