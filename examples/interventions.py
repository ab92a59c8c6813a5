"""Which encoder units *cause* the demo autoencoder's reconstruction error on spike windows?

1. Train the demo's LSTM autoencoder on normal sensor windows (as ``anomaly_debugging.py``).
2. Record the encoder for a labelled mix of normal, spike, level-shift and frozen windows and
   rank its units by how differently they respond to spikes (``ds.seqacts.compare``).
3. Ablate the top spike units inside the recurrence (``seqacts.ablate`` + ``intervene``) and
   measure the reconstruction error per anomaly kind, against ablating as many other units.
4. Scan every encoder unit on the spike windows (``seqacts.ablation_scan``): the units whose
   ablation changes the error most, and whether they are the ones ``compare`` found.

Run: ``python examples/interventions.py`` (about 10 s on two idle CPU cores).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import seqacts
from seqacts.demo import (
    ANOMALIES,
    CHANNELS,
    DemoConfig,
    LSTMAutoencoder,
    inject_anomalies,
    sensor_windows,
    train_autoencoder,
)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default=None, help="unused; accepted like the other examples")
parser.parse_args()

# 1. The demo's data and model; the model never sees an anomaly while training.
config = DemoConfig()
rng = np.random.default_rng(0)
torch.manual_seed(0)
train = sensor_windows(config.n_train, config.n_steps, rng)
kinds = [k for k in ("normal", *ANOMALIES) for _ in range(config.n_test)]
test, _ = inject_anomalies(sensor_windows(len(kinds), config.n_steps, rng), kinds, rng)
model = LSTMAutoencoder(len(CHANNELS), config.hidden)
train_autoencoder(model, train, config, log=lambda _: None)
x = torch.from_numpy(test)
kind = np.array(kinds)


def error(windows: torch.Tensor):
    """Reconstruction error per window: the score to explain."""

    def score(y: torch.Tensor) -> torch.Tensor:
        return ((y - windows) ** 2).mean(dim=(1, 2))

    return score


def per_kind(values: np.ndarray) -> str:
    return "  ".join(f"{k} {values[kind == k].mean():6.3f}" for k in ("normal", *ANOMALIES))


with torch.no_grad():
    plain = error(x)(model(x)).numpy()
print(f"reconstruction error, per kind:          {per_kind(plain)}")

# 2. Correlation: encoder units whose activity varies most differently on spike windows.
ds = seqacts.extract(model, x, layers="encoder.l0").assign_coords(anomaly=("sample", kind))
ranked = ds.seqacts.compare("anomaly", feature="std", baseline="normal")
spike = ranked.where(ranked["level"] == "spike", drop=True)
top = [int(u) for u in spike["unit"].values[:4]]
print("encoder units that respond most to spikes (Cohen's d of their std over time): "
      + ", ".join(f"u{u} ({d:+.1f})" for u, d in zip(top, spike["d"].values[:4], strict=True)))

# 3. Causation: ablate them inside the recurrence, at every step, and score again.
others = [u for u in range(config.hidden) if u not in top][: len(top)]
for name, units in (("top spike units", top), ("as many other units", others)):
    with torch.no_grad(), seqacts.intervene(model, seqacts.ablate("encoder.l0", units)):
        edited = error(x)(model(x)).numpy()
    print(f"ablating {name:<20} change: {per_kind(edited - plain)}")

# 4. Every unit, one at a time (several units per forward), on every window.
scan = seqacts.ablation_scan(model, x, error(x), layers="encoder.l0")
effect = scan["effect"].sel(layer="encoder.l0", direction="forward").assign_coords(
    anomaly=("sample", kind)
)
by_kind = effect.groupby("anomaly").mean("sample")
strongest = by_kind.sel(anomaly="spike").values.argsort()[::-1][:3]
print("ablation scan: units whose ablation raises the spike windows' error most:")
for u in strongest:
    print(f"  u{u:<3} change: {per_kind(effect.sel(unit=u).values)}")
print(f"compare's top units among them: {sorted(set(top) & set(strongest.tolist())) or 'none'}")
