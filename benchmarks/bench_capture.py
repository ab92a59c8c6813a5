"""Cost of ``seqacts.extract()`` against a plain forward and a hand-written LSTMCell unroll.

3-layer LSTM, batch 64, T=512, hidden 256, input 32, CPU float32 (the core issue's setting).
Target: extract() without internals <= 1.15x a plain forward. Prints ratios; asserts nothing
about time. ``--quick`` shrinks the sizes for a smoke run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, timed, timed_together  # noqa: E402

import seqacts  # noqa: E402


def hand_written_unroll(lstm: nn.LSTM, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What users write today: copy each layer into an LSTMCell and loop over time."""
    outs: dict[str, torch.Tensor] = {}
    layer_input = x
    for k in range(lstm.num_layers):
        cell = nn.LSTMCell(layer_input.shape[-1], lstm.hidden_size)
        cell.weight_ih = getattr(lstm, f"weight_ih_l{k}")
        cell.weight_hh = getattr(lstm, f"weight_hh_l{k}")
        cell.bias_ih = getattr(lstm, f"bias_ih_l{k}")
        cell.bias_hh = getattr(lstm, f"bias_hh_l{k}")
        h = x.new_zeros(x.shape[1], lstm.hidden_size)
        c = torch.zeros_like(h)
        hs = []
        for t in range(layer_input.shape[0]):
            h, c = cell(layer_input[t], (h, c))
            hs.append(h)
        layer_input = torch.stack(hs)
        outs[f"l{k}"] = layer_input
    return outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    batch, steps, hidden, inputs, n_layers = (64, 512, 256, 32, 3)
    if args.quick:
        batch, steps, hidden = 8, 64, 32
    torch.manual_seed(0)
    model = nn.LSTM(inputs, hidden, num_layers=n_layers).eval()
    x = torch.randn(steps, batch, inputs)

    def plain() -> object:
        with torch.no_grad():
            return model(x)

    def extract() -> object:
        return seqacts.extract(model, x)

    def unroll() -> object:
        with torch.no_grad():
            return hand_written_unroll(model, x)

    together = timed_together({"plain": plain, "extract": extract}, args.repeats)
    t_plain, t_extract = together["plain"], together["extract"]
    t_unroll = timed(unroll, max(1, args.repeats // 2))
    print(f"machine: {machine()}")
    print(f"model: LSTM {n_layers} layers, batch {batch}, T={steps}, hidden {hidden}, "
          f"input {inputs}, CPU float32")
    print(f"plain forward            {t_plain * 1e3:9.1f} ms   1.00x")
    print(f"seqacts.extract()        {t_extract * 1e3:9.1f} ms   {t_extract / t_plain:.2f}x"
          "   (target <= 1.15x)")
    print(f"hand-written LSTMCell    {t_unroll * 1e3:9.1f} ms   {t_unroll / t_plain:.2f}x")
    print(f"extract vs hand-written  {t_extract / t_unroll:.2f}x")


if __name__ == "__main__":
    main()
