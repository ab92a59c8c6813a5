"""The demo's explanation step: input attribution per window and the pointing game.

For each anomalous window, the most attributed (time, channel) cell of the reconstruction
error's integrated gradients either lies inside the injected anomaly (its channel, its steps)
or not; the fraction that does, per kind, is the pointing-game figure the demo prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import xarray as xr
from torch import nn

__all__ = ["SelfError", "attribution_of", "one_thread", "pointing_game", "STEPS"]

#: Integrated-gradients points per window in the demo.
STEPS = 16


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: for the demo's small model more threads only synchronise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class SelfError(nn.Module):
    """A window's reconstruction error as a function of the window: ``mean((model(x) - x)^2)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.model(x) - x) ** 2).mean(dim=(1, 2))


def attribution_of(model: nn.Module, windows: torch.Tensor, channels: list[str],
                   which: np.ndarray) -> xr.DataArray:
    """Integrated gradients of each window's reconstruction error, (sample, time, channel),
    for the windows flagged in ``which`` (NaN for the others)."""
    from .interventions.attribution import input_attribution

    rows = np.flatnonzero(which)
    attr = input_attribution(SelfError(model), windows[torch.from_numpy(rows)], lambda e: e,
                             steps=STEPS)  # fmt: skip
    full = np.full((len(windows), *attr.shape[1:]), np.nan, dtype=attr.dtype)
    full[rows] = attr.values
    delta = np.full(len(windows), np.nan)
    delta[rows] = attr["convergence_delta"].values
    return xr.DataArray(full, dims=("sample", "time", "channel"),
                        coords={"channel": channels, "convergence_delta": ("sample", delta)},
                        attrs={**attr.attrs, "long_name": "integrated gradients of the "
                               "reconstruction error"})  # fmt: skip


def pointing_game(ds: xr.Dataset, attribution: str = "attribution") -> dict[str, float]:
    """Per anomaly kind, the fraction of its windows whose most attributed cell (largest
    ``|attribution|`` over time and channel) lies inside the injected anomaly."""
    attr = np.nan_to_num(np.abs(ds[attribution].transpose("sample", "time", "channel").values))
    flat = attr.reshape(attr.shape[0], -1).argmax(1)
    t, ch = np.unravel_index(flat, attr.shape[1:])
    rows = np.arange(attr.shape[0])
    channel = np.asarray(ds["channel"].values)[ch]
    inside = ds["anomaly_mask"].values[rows, t] & (channel == ds["anomaly_channel"].values)
    kinds = ds["anomaly"].values
    return {str(k): float(inside[kinds == k].mean()) for k in dict.fromkeys(kinds)
            if k != "normal"}  # fmt: skip
