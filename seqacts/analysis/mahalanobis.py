"""Gaussian reference models for Mahalanobis scores: Ledoit-Wolf shrinkage and its moments.

:func:`ledoit_wolf` shrinks the covariance of a (samples x features) matrix. :class:`Moments`
holds additive sums (count, first, second and the fourth-order terms Ledoit-Wolf needs), so a
reference too large for memory is fitted from one pass of chunked sums, and the fit of "all
folds but one" is a subtraction rather than another pass. :class:`Gaussian` scores rows.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ReferenceMaskError, ReferenceSetError, ReferenceWarning
from .groups import group_labels

#: Names of labels that mark anomalies rather than normal samples.
ANOMALY_NAME = re.compile(r"anomal|outlier|fault|attack|abnormal|fraud", re.IGNORECASE)

__all__ = ["Gaussian", "Moments", "fit_rows", "fold_ids", "ledoit_wolf", "reference_mask",
           "reference_set"]


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf (2004) shrinkage of the covariance of ``x`` (samples x features).

    Returns the shrunk covariance ``(1 - s) S + s mu I`` (``S`` the maximum-likelihood
    covariance, ``mu`` its mean eigenvalue) and the shrinkage ``s`` in [0, 1].
    """
    n, p = x.shape
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n
    mu = np.trace(s) / p
    delta = np.sum((s - mu * np.eye(p)) ** 2) / p
    x2 = xc**2
    beta = (np.sum(x2.T @ x2) / n - np.sum(s**2)) / (n * p)
    shrink = 0.0 if delta <= 0 else float(min(beta, delta) / delta)
    return (1.0 - shrink) * s + shrink * mu * np.eye(p), shrink


@dataclass(frozen=True)
class Moments:
    """Sums over rows ``x_i`` (features ``p``) from which mean and shrunk covariance follow.

    ``n`` rows, ``s1 = sum x``, ``s2 = sum x x^T``, ``s3 = sum |x|^2 x``, ``s4 = sum |x|^4``,
    ``sa = sum |x|^2``. Sums of disjoint row sets add; removing a subset subtracts.
    """

    n: float
    s1: np.ndarray
    s2: np.ndarray
    s3: np.ndarray
    s4: float
    sa: float

    @classmethod
    def from_rows(cls, x: np.ndarray) -> Moments:
        x = np.asarray(x, dtype=np.float64)
        a = np.sum(x**2, axis=1)
        return cls(float(x.shape[0]), x.sum(0), x.T @ x, a @ x, float(a @ a), float(a.sum()))

    def __add__(self, other: Moments) -> Moments:
        return self._combine(other, 1.0)

    def __sub__(self, other: Moments) -> Moments:
        return self._combine(other, -1.0)

    def _combine(self, other: Moments, sign: float) -> Moments:
        return Moments(
            self.n + sign * other.n,
            self.s1 + sign * other.s1,
            self.s2 + sign * other.s2,
            self.s3 + sign * other.s3,
            self.s4 + sign * other.s4,
            self.sa + sign * other.sa,
        )

    def covariance(self, shrinkage: float | None) -> tuple[np.ndarray, float]:
        """Shrunk covariance and shrinkage: Ledoit-Wolf when ``shrinkage`` is None."""
        n, p = self.n, self.s1.size
        mean = self.s1 / n
        s = self.s2 / n - np.outer(mean, mean)
        mu = np.trace(s) / p
        eye = np.eye(p)
        if shrinkage is None:
            delta = np.sum((s - mu * eye) ** 2) / p
            # sum_i |x_i - m|^4 expanded in the stored sums (|x - m|^2 = a - 2 x.m + c)
            c = float(mean @ mean)
            centred4 = (
                self.s4
                - 4 * float(mean @ self.s3)
                + 2 * c * self.sa
                + 4 * float(mean @ self.s2 @ mean)
                - 4 * c * float(mean @ self.s1)
                + n * c**2
            )
            beta = (centred4 / n - np.sum(s**2)) / (n * p)
            shrink = 0.0 if delta <= 0 else float(min(max(beta, 0.0), delta) / delta)
        else:
            shrink = float(shrinkage)
        return (1.0 - shrink) * s + shrink * mu * eye, shrink

    def fit(self, shrinkage: float | None = None) -> Gaussian:
        """The Gaussian with these rows' mean and (shrunk) covariance."""
        return Gaussian.from_covariance(self.s1 / self.n, *self.covariance(shrinkage))


@dataclass(frozen=True)
class Gaussian:
    """Mean and eigen-decomposed covariance of a reference; :meth:`score` is the distance."""

    mean: np.ndarray
    evecs: np.ndarray
    evals: np.ndarray
    shrinkage: float

    @classmethod
    def from_covariance(cls, mean: np.ndarray, cov: np.ndarray, shrinkage: float) -> Gaussian:
        evals, evecs = np.linalg.eigh(cov)
        floor = max(float(evals.max()), 1e-300) * 1e-10  # constant features would divide by 0
        return cls(mean, evecs, np.maximum(evals, floor), shrinkage)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row (last axis = features) of ``x``; NaN rows stay NaN."""
        z = (x - self.mean) @ self.evecs
        return np.sqrt(np.sum(z**2 / self.evals, axis=-1))


def fit_rows(rows: np.ndarray, shrinkage: float | None = None) -> Gaussian:
    """Fit a :class:`Gaussian` to the rows of a (samples x features) matrix."""
    rows = np.asarray(rows, dtype=np.float64)
    if shrinkage is None:
        cov, shrink = ledoit_wolf(rows)
    else:
        shrink = float(shrinkage)
        cov = Moments.from_rows(rows).covariance(shrink)[0]
    return Gaussian.from_covariance(rows.mean(axis=0), cov, shrink)


def fold_ids(n: int, folds: int) -> np.ndarray:
    """The fold of each of ``n`` reference samples in order: 0, 1, ..., folds - 1, 0, ..."""
    return np.arange(n) % max(folds, 1)


def reference_mask(ds: xr.Dataset, reference: str | xr.DataArray | Sequence[Any]) -> np.ndarray:
    """A boolean mask along ``sample`` from a mask, a sequence or a coordinate's name."""
    labels = group_labels(ds, reference)
    if labels.dtype != bool:
        raise ReferenceMaskError(
            f"reference: expected a boolean mask along 'sample' or a Dataset, got dtype "
            f"{labels.dtype}; e.g. reference=~ds.is_anomaly"
        )
    mask = np.asarray(labels.values)
    name = str(labels.name or "")
    if (ANOMALY_NAME.search(name) and name in ds.variables and ds[name].dtype == bool
            and mask.any() and np.array_equal(mask, np.asarray(ds[name].values))):
        warnings.warn(
            f"reference: the mask is the label {name!r} itself, so its {int(mask.sum())} of "
            f"{mask.size} samples, those labelled as anomalies, would be the reference of "
            f"normal; pass its complement, e.g. reference=~ds.{name}",
            ReferenceWarning, stacklevel=4)
    return mask


def reference_set(ds: xr.Dataset, reference: xr.Dataset | str | xr.DataArray | Sequence[Any],
                  layers: Sequence[Any] | None) -> tuple[xr.Dataset | None, np.ndarray | None]:
    """The known-normal samples as ``(dataset, None)`` or ``(None, mask along sample)``.

    Parameters
    ----------
    ds : xarray.Dataset
        The samples to score.
    reference : xarray.Dataset, or a boolean mask along ``sample`` (or its name)
        Another dataset of the same model, or a selection of ``ds``'s samples.
    layers : sequence, optional
        Layers of ``ds`` that a reference dataset must hold too.

    Returns
    -------
    tuple
        The reference dataset or ``None``, and the mask or ``None``.
    """
    if not isinstance(reference, xr.Dataset):
        return None, reference_mask(ds, reference)
    missing = [n for n in layers or () if n not in reference["layer"].values]
    if missing:
        raise ReferenceSetError(f"reference: dataset lacks layers {missing} that ds has")
    return reference, None
