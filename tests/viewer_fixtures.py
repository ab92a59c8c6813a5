"""A small labelled recording for the viewer's tests, like the demo's (input, mask, scores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr

import seqacts
from seqacts.demo import ANOMALIES, CHANNELS, inject_anomalies, sensor_windows


def labelled_recording(n_per_kind: int = 6, steps: int = 24, hidden: int = 8) -> xr.Dataset:
    """2-layer LSTM over sensor windows with injected anomalies; internals, input and scores."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = torch.nn.LSTM(len(CHANNELS), hidden, num_layers=2, batch_first=True).eval()
    kinds = [k for k in ("normal", *ANOMALIES) for _ in range(n_per_kind)]
    x, where = inject_anomalies(sensor_windows(len(kinds), steps, rng), kinds, rng)
    ds = seqacts.extract(model, torch.from_numpy(x), internals=True)
    ds = ds.assign_coords(
        is_anomaly=("sample", np.array([k != "normal" for k in kinds])),
        anomaly=("sample", np.array(kinds)),
        channel=list(CHANNELS),
    )
    ds["input"] = (("sample", "time", "channel"), x)
    ds["anomaly_mask"] = (("sample", "time"), where)
    ds["reconstruction_error"] = ("sample", rng.random(len(kinds)))
    ds["step_distance"] = seqacts.step_distance(ds, ~ds["is_anomaly"]).reset_coords(drop=True)
    return ds


def write_recording(path: Path) -> xr.Dataset:
    ds = labelled_recording()
    ds.to_netcdf(path)
    return ds
