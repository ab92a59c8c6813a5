"""Cost of per-timestep internals (cell states and gates) against a plain forward.

3-layer LSTM (and a GRU row), batch 64, T=512, hidden 256, input 32, CPU float32 (the
internals issue's setting). Rows: plain forward, ``extract()``, ``extract(internals=True)``,
``extract(internals=["c", "forget_gate"])`` and the hand-written alternative: an
``nn.LSTMCell`` loop per layer that collects h and c. Target: internals <= 1.8x a plain
forward. Prints ratios measured in one run; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, timed_together  # noqa: E402

import seqacts  # noqa: E402


def lstm_cell_loop(lstm: nn.LSTM, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The hand-written alternative: every layer as an LSTMCell loop, collecting h and c."""
    layer_input, collected = x, []
    for k in range(lstm.num_layers):
        cell = nn.LSTMCell(layer_input.shape[-1], lstm.hidden_size)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(cell, name, getattr(lstm, f"{name}_l{k}"))
        h = x.new_zeros(x.shape[1], lstm.hidden_size)
        c = torch.zeros_like(h)
        hs, cs = [], []
        for t in range(layer_input.shape[0]):
            h, c = cell(layer_input[t], (h, c))
            hs.append(h)
            cs.append(c)
        layer_input = torch.stack(hs)
        collected.append((layer_input, torch.stack(cs)))
    return collected


def rows(model: nn.Module, x: torch.Tensor, repeats: int, with_loop: bool) -> dict[str, float]:
    def plain() -> object:
        with torch.no_grad():
            return model(x)

    fns = {
        "plain forward": plain,
        "extract()": lambda: seqacts.extract(model, x),
        "extract(internals=True)": lambda: seqacts.extract(model, x, internals=True),
    }
    if isinstance(model, nn.LSTM):
        fns['extract(internals=["c","forget_gate"])'] = lambda: seqacts.extract(
            model, x, internals=["c", "forget_gate"])
    if with_loop and isinstance(model, nn.LSTM):
        def loop() -> object:
            with torch.no_grad():
                return lstm_cell_loop(model, x)

        fns["hand-written LSTMCell loop (h, c)"] = loop
    return timed_together(fns, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    batch, steps, hidden, inputs, n_layers = (64, 512, 256, 32, 3)
    if args.quick:
        batch, steps, hidden = 8, 64, 32
    print(f"machine: {machine()}")
    print(f"{n_layers} layers, batch {batch}, T={steps}, hidden {hidden}, input {inputs}, "
          "CPU float32; target: internals <= 1.8x plain")
    x = torch.randn(steps, batch, inputs)
    for kind in (nn.LSTM, nn.GRU):
        torch.manual_seed(0)
        model = kind(inputs, hidden, num_layers=n_layers).eval()
        times = rows(model, x, args.repeats, with_loop=True)
        base = times["plain forward"]
        print(f"\n{kind.__name__}")
        for name, t in times.items():
            print(f"  {name:<42} {t * 1e3:9.1f} ms  {t / base:5.2f}x")


if __name__ == "__main__":
    main()
