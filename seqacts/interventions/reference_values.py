"""Values an ablation writes taken from a recording: each unit's mean, or a resampled sample.

``ablate(..., value="mean", reference=ds)`` writes each unit's mean over the reference's valid
steps (per step with ``per_step=True``); ``value="resample"`` writes, for every sample of the
edited run, the unit's value at the same step in one reference sample drawn at random (seeded)
among those recorded over every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from ..errors import EditError

__all__ = ["VALUE_RULES", "check_value", "draw_rows", "from_reference", "reference_values"]

#: The string values ``ablate`` and ``ablation_scan`` take, and what each writes.
VALUE_RULES: dict[str, str] = {
    "mean": "each unit's mean over the reference's valid steps (per step with per_step=True)",
    "resample": "the unit's value at the same step in a randomly drawn reference sample",
}


def check_value(value: object, reference: object, per_step: bool) -> None:
    """Raise unless ``value``, ``reference`` and ``per_step`` fit together (``ablate``)."""
    if not isinstance(value, str) and (reference is not None or per_step):
        raise EditError(
            "reference= and per_step= take effect with value='mean' or 'resample' only; pass "
            "one of those, or drop them for a fixed value"
        )
    if isinstance(value, str):
        if reference is None:
            raise EditError(
                f"value={value!r}: pass reference=, a dataset recorded from the same model"
            )
        if value not in VALUE_RULES:
            raise EditError(f"value: expected a float, a tensor, 'mean' or 'resample', got {value!r}")


def reference_values(reference: object, layer: str, direction: str, state: str, rule: str,
                     per_step: bool) -> Tensor:
    """The reference's values of one layer's ``state``, all its units, as float64.

    ``"mean"``: ``(1, W)``, or ``(1, T, W)`` per step; ``"resample"``: ``(R, T, W)``, the
    reference samples recorded over every step, to draw from.
    """
    if rule not in VALUE_RULES:
        raise EditError(
            f"value: expected a float, a tensor or one of {', '.join(map(repr, VALUE_RULES))}, "
            f"got {rule!r}"
        )
    if not isinstance(reference, xr.Dataset):
        raise EditError(
            f"value={rule!r}: pass reference=, a dataset recorded from the same model (select "
            f"its known-normal samples with ds.isel(sample=mask)); got {type(reference).__name__}"
        )
    if state not in reference:
        hint = " (record it with internals=['c'])" if state == "c" else ""
        raise EditError(f"value={rule!r}: the reference dataset has no variable {state!r}{hint}")
    if layer not in reference["layer"].values:
        raise EditError(
            f"value={rule!r}: the reference has no layer {layer!r}; it holds "
            f"{', '.join(map(str, reference['layer'].values))}"
        )
    one = reference.sel(layer=layer)
    var = one[state].sel(direction=direction).transpose("sample", "time", "unit")
    steps = xr.DataArray(np.arange(var.sizes["time"]), dims="time")
    var = var.where(steps < one["length"])  # padding past each sample's length left out
    if rule == "mean":
        arr = var.mean("sample") if per_step else var.mean(("sample", "time"))
        vals = np.asarray(arr.values, dtype=np.float64)
        if np.isnan(vals[..., : int(one["n_cell_units" if state == "c" else "n_units"])]).any():
            raise EditError(
                f"value='mean': the reference has no valid value of {layer} at some "
                f"{'step' if per_step else 'unit'}; pass a reference recorded over every step"
            )
        return torch.from_numpy(vals).unsqueeze(0)
    lengths = one["length"].values
    full = np.asarray(var.values, dtype=np.float64)[lengths == var.sizes["time"]]
    if full.shape[0] == 0:
        raise EditError(
            "value='resample': no reference sample is recorded over every step; pass a reference "
            "whose samples are as long as the edited run"
        )
    return torch.from_numpy(full)


def draw_rows(pool: Tensor, n: int, seed: int) -> Tensor:
    """``n`` rows of ``pool`` drawn uniformly with replacement, reproducibly from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return pool[torch.randint(pool.shape[0], (n,), generator=gen)]


def from_reference(edit: Any, label: str, width: int) -> tuple[Tensor, Tensor | None]:
    """An ``ablate(value="mean" | "resample")`` edit's values for layer ``label`` of ``width``
    units, and for ``"resample"`` the pool each run draws its samples from."""
    values = reference_values(edit.reference, label, edit.direction, edit.state, edit.value,
                              edit.per_step)[..., :width]  # fmt: skip
    if edit.value == "resample":
        return draw_rows(values, 1, edit.seed), values
    return values, None
