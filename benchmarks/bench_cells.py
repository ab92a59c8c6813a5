"""Cost of recording a Python cell (``cells=``) against a plain forward and a forward hook.

A layer-norm LSTM cell written in Python, stepped by the model over T=256 steps, batch 64,
hidden 128, input 32, CPU float32, one thread, timed in this process's CPU time (steadier on a
shared machine). The hand-written alternative is a forward hook on the cell that keeps each
step's (h, c) and stacks them afterwards. Prints ratios; asserts nothing about time.
``--quick`` shrinks the sizes for a smoke run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, timed_together  # noqa: E402

import seqacts  # noqa: E402


class LayerNormLSTMCell(nn.Module):
    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.ih, self.hh = nn.Linear(n_in, 4 * hidden), nn.Linear(hidden, 4 * hidden, bias=False)
        self.ln = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, g, o = (self.ih(x) + self.hh(h)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.ln(c)), c


class Loop(nn.Module):
    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.cell, self.hidden = LayerNormLSTMCell(n_in, hidden), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        state = (h, h)
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
        return state[0]


def hooked(model: Loop, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What users write today: a forward hook keeping every step's state."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = model.cell.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        model(x)
    finally:
        handle.remove()
    return torch.stack([h for h, _ in seen], 1), torch.stack([c for _, c in seen], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    batch, steps, hidden, inputs = (64, 256, 128, 32)
    if args.quick:
        batch, steps, hidden = 8, 32, 16
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = Loop(inputs, hidden).eval()
    x = torch.randn(batch, steps, inputs)

    def plain() -> object:
        with torch.no_grad():
            return model(x)

    def extract() -> object:
        return seqacts.extract(model, x, cells={"cell": "h,c"})

    def extract_c() -> object:
        return seqacts.extract(model, x, cells={"cell": "h,c"}, internals=["c"])

    def hook() -> object:
        with torch.no_grad():
            return hooked(model, x)

    t = timed_together({"plain": plain, "extract": extract, "extract_c": extract_c,
                        "hook": hook}, args.repeats, clock=time.process_time)
    print(f"machine: {machine()}")
    print(f"model: layer-norm LSTM cell in Python, batch {batch}, T={steps}, hidden {hidden}, "
          f"input {inputs}, CPU float32")
    print(f"plain forward                     {t['plain'] * 1e3:9.1f} ms   1.00x")
    print(f"extract(cells=)                   {t['extract'] * 1e3:9.1f} ms   "
          f"{t['extract'] / t['plain']:.2f}x")
    print(f"extract(cells=, internals=['c'])  {t['extract_c'] * 1e3:9.1f} ms   "
          f"{t['extract_c'] / t['plain']:.2f}x")
    print(f"hand-written forward hook         {t['hook'] * 1e3:9.1f} ms   "
          f"{t['hook'] / t['plain']:.2f}x")
    print(f"extract vs hand-written hook      {t['extract'] / t['hook']:.2f}x")


if __name__ == "__main__":
    main()
