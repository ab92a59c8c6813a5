"""A GRU encoder and an ``LSTMCell`` decoder loop: cells stacked along time, variable lengths.

The encoder reads padded, variable-length sequences (``pack_padded_sequence``); the decoder is
an ``nn.LSTMCell`` called once per output step, feeding back its own prediction. seqacts
records both: the encoder's steps per sample (``length`` differs per sample), and the cell's
calls within one forward stacked along ``time`` as if it were a layer of its own.

The model is trained for a few seconds to output its input sequence reversed.

Run: ``python examples/seq2seq_cells.py [--out DIR]`` (a few seconds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqacts


class Seq2Seq(nn.Module):
    """GRU encoder; LSTMCell decoder unrolled for ``steps`` outputs."""

    def __init__(self, n_features: int = 3, hidden: int = 24, steps: int = 6) -> None:
        super().__init__()
        self.steps = steps
        self.encoder = nn.GRU(n_features, hidden, batch_first=True)
        self.decoder = nn.LSTMCell(n_features, hidden)
        self.head = nn.Linear(hidden, n_features)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.encoder(packed)
        h, c = h[-1], torch.zeros_like(h[-1])
        y = torch.zeros(x.shape[0], x.shape[2])
        outputs = []
        for _ in range(self.steps):
            h, c = self.decoder(y, (h, c))
            y = self.head(h)
            outputs.append(y)
        return torch.stack(outputs, dim=1)


def batch(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequences of 3..6 steps (zero-padded to 6) and, as targets, their first 6 steps reversed."""
    lengths = rng.integers(3, 7, size=n)
    x = rng.normal(size=(n, 6, 3)).astype(np.float32)
    target = np.zeros_like(x)
    for i, n_steps in enumerate(lengths):
        x[i, n_steps:] = 0.0
        target[i, :n_steps] = x[i, :n_steps][::-1]
    return torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(target)


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="demo_out/seq2seq_cells", help="output directory")
out = Path(parser.parse_args().out)
out.mkdir(parents=True, exist_ok=True)

rng = np.random.default_rng(0)
torch.manual_seed(0)
torch.set_num_threads(1)  # tiny model: extra threads only add overhead
model = Seq2Seq()
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(300):
    x, lengths, target = batch(64, rng)
    loss = nn.functional.mse_loss(model(x, lengths), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"trained to reverse sequences: loss {loss.item():.3f} (inputs have unit variance)")

print("recordable layers:", seqacts.layers(model))  # ['encoder.l0', 'decoder']
x, lengths, _ = batch(8, rng)
ds = seqacts.extract(model.eval(), x, lengths, internals=True)
print(ds["length"].to_pandas())  # encoder: each sample's own length; decoder: 6 calls

# One layer at a time, with the other layers' padding removed.
enc = ds.seqacts.layer("encoder.l0")  # GRU: reset/update/new gates, no LSTM variables
dec = ds.seqacts.layer("decoder")  # LSTMCell: c and four gates, one step per call
print("encoder variables:", sorted(enc.data_vars), "| decoder variables:", sorted(dec.data_vars))
short = int(lengths.argmin())
print(f"sample {short} has {int(lengths[short])} input steps; its encoder states after that are "
      f"NaN: {bool(enc['h'].isel(sample=short, time=-1).isnull().all())}")  # fmt: skip

# The decoder's first state is the encoder's final state: the cell continues where it left off.
handoff = float(abs(dec["h_0"] - ds["h_n"].sel(layer="encoder.l0", direction="forward")).max())
print(f"decoder h_0 == encoder h_n: max difference {handoff:.1e}")

print(ds.seqacts.summary_table())
sat = ds.seqacts.saturation()  # GRU and LSTMCell gates side by side (NaN where a gate is absent)
print("mean right-saturation per gate and layer:")
print(sat["right"].mean(["direction", "unit"]).to_pandas().round(2))
ds.seqacts.plot.heatmap(short, "encoder.l0", panel="step_change").savefig(out / "encoder.png")
ds.seqacts.plot.heatmap(short, "decoder", var="forget_gate").savefig(out / "decoder_forget.png")
ds.seqacts.plot.saturation().savefig(out / "saturation.png")
print(f"figures in {out}")
