"""Dataset memory of a dual-path model (asteroid DPRNN / demucs-like), as its rows are laid out.

A dual-path block runs an intra-chunk BiLSTM over ``B x chunks`` rows (each row one chunk,
``chunk`` steps) and an inter-chunk LSTM over ``B x chunk`` rows (each row one position in the
chunk, ``chunks`` steps). With 6 blocks the 12 layers have two layouts. The dataset holds one
row set per layout (``B x chunks + B x chunk`` samples); before per-layout alignment, every
module had rows of its own (``6 x (B x chunks + B x chunk)`` samples), mostly NaN.

Prints the samples, the bytes of ``h`` (and of all variables) and the share of NaN in ``h``;
run it against another checkout (``PYTHONPATH=<checkout>``) to compare layouts. Asserts
nothing. ``--quick`` shrinks the sizes for a smoke run.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from common import machine
from torch import nn

import seqacts


class DualPath(nn.Module):
    """``blocks`` dual-path blocks over a (B, frames, features) input cut into chunks."""

    def __init__(self, features: int, hidden: int, chunk: int, blocks: int) -> None:
        super().__init__()
        self.chunk = chunk
        self.intra = nn.ModuleList(
            nn.LSTM(features, hidden // 2, batch_first=True, bidirectional=True)
            for _ in range(blocks))
        self.inter = nn.ModuleList(nn.LSTM(features, features, batch_first=True)
                                   for _ in range(blocks))
        self.proj = nn.ModuleList(nn.Linear(hidden // 2 * 2, features) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, frames, f = x.shape
        n = frames // self.chunk
        z = x.reshape(b, n, self.chunk, f)
        for intra, inter, proj in zip(self.intra, self.inter, self.proj, strict=True):
            rows, _ = intra(z.reshape(b * n, self.chunk, f))  # B*chunks rows, chunk steps
            z = z + proj(rows).reshape(b, n, self.chunk, f)
            across, _ = inter(z.transpose(1, 2).reshape(b * self.chunk, n, f))  # B*chunk rows
            z = z + across.reshape(b, self.chunk, n, f).transpose(1, 2)
        return z.reshape(b, frames, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    args = parser.parse_args()
    batch, frames, chunk, hidden, features = (2, 24, 4, 8, 4) if args.quick else (4, 384, 16, 64, 16)
    torch.manual_seed(0)
    model = DualPath(features, hidden, chunk, blocks=6).eval()
    x = torch.randn(batch, frames, features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", seqacts.RecordingWarning)
        ds = seqacts.extract(model, x)
    h = ds["h"].values
    n_layouts = len({tuple(ds.length.values[:, i] > 0) for i in range(ds.sizes["layer"])})
    print(machine())
    print(f"dual path: 6 blocks, B={batch}, {frames} frames in chunks of {chunk}, hidden {hidden}")
    print("| layout | samples | row sets | h MiB | all variables MiB | h NaN |")
    print("|---|---|---|---|---|---|")
    print(f"| this checkout | {ds.sizes['sample']} | {n_layouts} | {h.nbytes / 2**20:.1f} | "
          f"{ds.nbytes / 2**20:.1f} | {np.isnan(h).mean():.0%} |")


if __name__ == "__main__":
    main()
