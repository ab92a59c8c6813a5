"""Why does my LSTM autoencoder flag (or miss) an anomaly? The demo's story, step by step.

1. Make multichannel sensor windows and inject spikes, level shifts and frozen sensors.
2. Train a small LSTM autoencoder on normal windows only.
3. Record every layer's states and gates for held-out windows with ``seqacts.extract``.
4. Ask the activations: which windows look abnormal (Mahalanobis distance of the final hidden
   state), when the state left normal (distance of every step's state), which anomaly kinds
   each signal sees, which units carry each kind at the anomalous steps, and whether any gate
   or unit is stuck.

Run: ``python examples/anomaly_debugging.py [--out DIR]`` (under a minute on two CPU cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import seqacts
from seqacts.analysis.compare import roc_auc
from seqacts.demo import (
    ANOMALIES,
    CHANNELS,
    DemoConfig,
    LSTMAutoencoder,
    inject_anomalies,
    sensor_windows,
    train_autoencoder,
)
from seqacts.viz.report import report

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="demo_out/anomaly_debugging", help="output directory")
out = Path(parser.parse_args().out)
out.mkdir(parents=True, exist_ok=True)

# 1. Data: normal windows to train on and to use as the reference, a labelled test mix.
config = DemoConfig()
rng = np.random.default_rng(0)
torch.manual_seed(0)
train = sensor_windows(config.n_train, config.n_steps, rng)
reference = sensor_windows(config.n_reference, config.n_steps, rng)
kinds = [k for k in ("normal", *ANOMALIES) for _ in range(config.n_test)]
test, where = inject_anomalies(sensor_windows(len(kinds), config.n_steps, rng), kinds, rng)

# 2. The model never sees an anomaly while training.
model = LSTMAutoencoder(len(CHANNELS), config.hidden)
train_autoencoder(model, train, config)

# 3. Activations. The reference only needs final states; the test set gets the gates too.
ref = seqacts.extract(model, torch.from_numpy(reference))
ds = seqacts.extract(model, torch.from_numpy(test), internals=True)
ds = ds.assign_coords(
    is_anomaly=("sample", np.array([k != "normal" for k in kinds])),
    anomaly=("sample", np.array(kinds)),
    channel=list(CHANNELS),
)
ds["input"] = (("sample", "time", "channel"), test)
ds["anomaly_mask"] = (("sample", "time"), where)
print(ds.seqacts.summary_table())

# 4a. An anomaly score from the model's own internals, per layer.
score = ds.seqacts.distance(ref)  # (sample, layer)
print("\nROC AUC of the Mahalanobis distance of h_n, per layer and anomaly kind:")
for layer in ds["layer"].values:
    per_kind = {
        kind: float(roc_auc(score.sel(layer=layer)[keep], ds["is_anomaly"][keep]))
        for kind in ANOMALIES
        for keep in [ds["anomaly"].isin(["normal", kind])]
    }
    overall = float(roc_auc(score.sel(layer=layer), ds["is_anomaly"]))
    print(f"  {layer}: {overall:.3f}  " + "  ".join(f"{k} {v:.2f}" for k, v in per_kind.items()))

# 4b. Spikes fade from the final state, but the state *jumps* when one arrives.
jump = ds.seqacts.step_change().max(["direction", "time"])
spikes = ds["anomaly"].isin(["normal", "spike"])
auc = float(roc_auc(jump.sel(layer="encoder.l0")[spikes], ds["is_anomaly"][spikes]))
print(f"\nlargest step change of encoder.l0 separates spikes from normal windows: AUC {auc:.2f}")

# 4c. When did the state leave normal? The distance of every step's state to the reference's
# steps: its maximum over time scores the window, its argmax says when.
steps = ds.seqacts.step_distance(ref).sel(layer="encoder.l0")  # (sample, time)
window = steps.max("time")
print("\nROC AUC of the max step distance of encoder.l0 (h_n distance in brackets):")
for kind in ANOMALIES:
    keep = ds["anomaly"].isin(["normal", kind])
    auc = float(roc_auc(window[keep], ds["is_anomaly"][keep]))
    was = float(roc_auc(score.sel(layer="encoder.l0")[keep], ds["is_anomaly"][keep]))
    when = steps.argmax("time").where(ds["anomaly"] == kind, drop=True).astype(int)
    inside = ds["anomaly_mask"].sel(sample=when["sample"]).isel(time=when).mean()
    print(f"  {kind:<12} {auc:.2f} ({was:.2f}); largest departure inside the anomaly in "
          f"{float(inside):.0%} of windows")

# 4d. Which units carry each kind? Cohen's d of each unit's distance from normal
# (|h - normal mean| / normal std at that step) over the anomalous steps, against the same
# steps of normal windows; the effect size is stated in words.
by_kind = ds.seqacts.compare("anomaly", where="anomaly_mask", feature="deviation")
print("\nunits that leave their normal range at the anomalous steps, per kind:")
for kind in ANOMALIES:
    top = by_kind.isel(rank=np.flatnonzero(by_kind["level"].values == kind)[:3])
    units = ", ".join(
        f"{layer} u{unit} (d={d:+.1f}, {size})"
        for layer, unit, d, size in zip(top["layer"].values, top["unit"].values,
                                        top["d"].values, top["magnitude"].values, strict=True)
    )  # fmt: skip
    print(f"  {kind:<12} {units}")

# 4e. Stuck gates or dead units would show here.
dead = ds.seqacts.dead_units()
print(f"\ndead units: {int(dead['dead'].sum())}; "
      f"forget gates right-saturated >50% of steps: "
      f"{int((ds.seqacts.saturation().sel(gate='forget_gate')['right'] > 0.5).sum())}")  # fmt: skip

# The most anomalous window: its input and step distance aligned with the hidden state.
worst = int(window.argmax("sample"))
fig = ds.seqacts.plot.heatmap(worst, "encoder.l0", panel=["input", steps],
                              highlight="anomaly_mask")  # fmt: skip
fig.savefig(out / "worst_window.png", dpi=100)
path = report(ds, out, reference=ref, kinds="anomaly", title="Anomaly debugging")
print(f"\nreport: {path}")
