"""Cohen's d in words, so that a weak effect is never presented as a response (Cohen, 1988)."""

from __future__ import annotations

import numpy as np

__all__ = ["EFFECT_SIZES", "d_interval", "magnitude"]

#: Lower bounds of ``|d|`` and their names, largest first.
EFFECT_SIZES: tuple[tuple[float, str], ...] = (
    (0.8, "large"),
    (0.5, "medium"),
    (0.2, "small"),
    (0.0, "negligible"),
)


def magnitude(d: float | np.ndarray) -> str | np.ndarray:
    """``"negligible"`` (|d| < 0.2), ``"small"``, ``"medium"`` (>= 0.5) or ``"large"`` (>= 0.8).

    Elementwise on arrays; NaN gives ``""``.
    """
    arr = np.abs(np.asarray(d, dtype=np.float64))
    out = np.full(arr.shape, "", dtype=object)
    for bound, name in reversed(EFFECT_SIZES):
        out[arr >= bound] = name
    return str(out[()]) if out.ndim == 0 else out.astype(str)


def d_interval(d: float, n1: int, n0: int) -> tuple[float, float]:
    """The 95% confidence interval of Cohen's d for groups of ``n1`` and ``n0`` samples, by the
    normal approximation of its standard error (Hedges & Olkin, 1985):
    ``d +- 1.96 sqrt((n1 + n0) / (n1 n0) + d**2 / (2 (n1 + n0)))``; NaN for an empty group."""
    if n1 < 1 or n0 < 1:
        return float("nan"), float("nan")
    se = float(np.sqrt((n1 + n0) / (n1 * n0) + d**2 / (2 * (n1 + n0))))
    return d - 1.96 * se, d + 1.96 * se

