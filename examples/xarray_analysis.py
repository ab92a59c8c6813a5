"""Activations are a plain ``xarray.Dataset``: groupby, resample along labelled time, select.

A day of one-minute readings from six machines (four sensor channels each) runs through the
demo's LSTM autoencoder architecture, with the timestamps as the ``time`` coordinate. Two
machines develop a fault in the afternoon (one sensor drifts off, one freezes). Then:

* ``resample`` along the labelled time axis: hourly mean activity and the largest hourly state
  jump per machine;
* ``groupby`` a coordinate you attach (machine line) and a datetime component (hour of day);
* select the units that separate faulty from healthy machines by effect size, with
  vectorised indexing along the ranking.

Run: ``python examples/xarray_analysis.py [--out DIR]`` (about 10 s).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import seqacts
from seqacts.demo import CHANNELS, DemoConfig, LSTMAutoencoder, sensor_windows, train_autoencoder

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="demo_out/xarray_analysis", help="output directory")
out = Path(parser.parse_args().out)
out.mkdir(parents=True, exist_ok=True)

rng = np.random.default_rng(1)
torch.manual_seed(1)
model = LSTMAutoencoder(len(CHANNELS), 16)
train_autoencoder(model, sensor_windows(256, 48, rng), DemoConfig(epochs=15), log=lambda _: None)

# A day of readings per machine: the normal signal, continued for 1440 minutes.
minutes = pd.date_range("2024-05-01", periods=24 * 60, freq="1min")
x = sensor_windows(6, len(minutes), rng)
x[4, 14 * 60 :, 1] += np.linspace(0, 3, 10 * 60, dtype=np.float32)  # drifts from 14:00
x[5, 16 * 60 :, 3] = x[5, 16 * 60, 3]  # flow sensor frozen from 16:00
machines = ["press-1", "press-2", "lathe-1", "lathe-2", "press-3", "lathe-3"]

ds = seqacts.extract(model, torch.from_numpy(x), time=minutes, layers="encoder.*")
ds = ds.assign_coords(
    sample=machines,
    line=("sample", [m.split("-")[0] for m in machines]),
    faulty=("sample", np.array([False, False, False, False, True, True])),
)
h = ds["h"].sel(layer="encoder.l0", direction="forward")

# Resample along labelled time: hourly mean |h| and the largest state jump per hour.
hourly = abs(h).mean("unit").resample(time="1h").mean()
jumps = ds.seqacts.step_change().sel(layer="encoder.l0", direction="forward")
print("largest hourly state jump per machine (rows: hours 12:00-18:00)")
print(jumps.resample(time="1h").max().sel(time=slice("2024-05-01 12:00", "2024-05-01 18:00"))
      .to_pandas().T.round(2))  # fmt: skip

# Groupby a coordinate you attached, and by hour of day.
print("\nmean activity per production line (morning vs afternoon):")
daypart = h["time"].dt.hour >= 12
per_line = abs(h).mean("unit").groupby("line").mean().groupby(daypart.rename("afternoon")).mean()
print(per_line.to_pandas().round(3))

# Units that separate the faulty machines from the healthy ones, afternoon only.
afternoon = ds.sel(time=slice("2024-05-01 14:00", None))
ranked = afternoon.seqacts.compare("faulty")
top = ranked.isel(rank=slice(0, 4))
print("\nunits that respond most to the faults (Cohen's d of the mean state):")
print(top[["d", "mean", "baseline_mean"]].to_dataframe().round(2))
# Vectorised selection along the ranking: one trace per (layer, direction, unit) of `top`.
selected = ds["h"].sel(layer=top["layer"], direction=top["direction"], unit=top["unit"])
print("selected:", dict(selected.sizes))  # sample, time, rank

fig = (
    selected.resample(time="10min")
    .mean()
    .plot.line(x="time", hue="sample", col="rank", col_wrap=2, figsize=(11, 6))
    .fig
)
fig.savefig(out / "top_units.png", dpi=90)
fig = hourly.plot.line(x="time", hue="sample", figsize=(9, 3.5))[0].figure
fig.savefig(out / "hourly_activity.png", dpi=90)
print(f"\nfigures in {out}")
