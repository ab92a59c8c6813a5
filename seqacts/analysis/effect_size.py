"""Cohen's d in words, so that a weak effect is never presented as a response (Cohen, 1988)."""

from __future__ import annotations

import numpy as np

__all__ = ["EFFECT_SIZES", "magnitude"]

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
