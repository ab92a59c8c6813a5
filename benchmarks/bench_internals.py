"""Cost of per-timestep internals (cell states and gates) against plain forwards, in both modes.

3-layer LSTM (and a GRU row), batch 64, T=512, hidden 256, input 32, CPU float32 (the
internals issue's setting). Rows, timed round-robin in one run:

- plain forward without and with autograd (the grad-mode forward's parameters require grad;
  its graph is discarded, as ``extract(grad=True)`` discards it);
- ``extract()``, ``extract(internals=True)`` (no grad: gates recomputed from ``h_{t-1}``) and
  ``extract(internals=True, grad=True)`` (LSTM gates read from the oneDNN kernel's workspace);
- the hand-written alternatives: a loop over steps per layer with the cell's weights keeping
  c and all four gates (input projection hoisted out of the loop), and an ``nn.LSTMCell``
  loop keeping h and c.

Targets: grad-mode internals <= 1.35x a grad-mode forward; no-grad internals <= the loop
keeping c and four gates, and <= 2.3x a plain forward. Prints ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, timed_together  # noqa: E402

import seqacts  # noqa: E402


def lstm_cell_loop(lstm: nn.LSTM, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer as an ``nn.LSTMCell`` loop, collecting h and c."""
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


def lstm_gate_loop(lstm: nn.LSTM, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Every layer as a loop over steps with the LSTM equations, keeping h, c and the gates."""
    layer_input, collected = x, []
    steps, batch = x.shape[:2]
    for k in range(lstm.num_layers):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")
        bias = getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")
        inputs = torch.addmm(bias, layer_input.reshape(steps * batch, -1), w_ih.t())
        inputs = inputs.view(steps, batch, -1)
        h = x.new_zeros(batch, lstm.hidden_size)
        c = torch.zeros_like(h)
        kept: dict[str, list[torch.Tensor]] = {n: [] for n in ("h", "c", "i", "f", "g", "o")}
        for t in range(steps):
            i, f, g, o = torch.addmm(inputs[t], h, w_hh.t()).chunk(4, 1)
            i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
            c = f * c + i * g
            h = o * c.tanh()
            for name, value in zip("hcifgo", (h, c, i, f, g, o), strict=True):
                kept[name].append(value)
        layer = {n: torch.stack(v) for n, v in kept.items()}
        layer_input = layer["h"]
        collected.append(layer)
    return collected


def rows(
    model: nn.Module, x: torch.Tensor, repeats: int, clock: Callable[[], float]
) -> dict[str, float]:
    def plain() -> object:
        with torch.no_grad():
            return model(x)

    def plain_grad() -> object:
        with torch.enable_grad():
            return model(x)

    def no_grad(fn):  # noqa: ANN001, ANN202
        def run() -> object:
            with torch.no_grad():
                return fn(model, x)

        return run

    fns = {
        "plain forward (no grad)": plain,
        "plain forward (grad)": plain_grad,
        "extract()": lambda: seqacts.extract(model, x),
        "extract(internals=True)": lambda: seqacts.extract(model, x, internals=True),
        "extract(internals=True, grad=True)": lambda: seqacts.extract(
            model, x, internals=True, grad=True),
    }
    if isinstance(model, nn.LSTM):
        fns["hand-written loop (h, c, 4 gates)"] = no_grad(lstm_gate_loop)
        fns["hand-written LSTMCell loop (h, c)"] = no_grad(lstm_cell_loop)
    return timed_together(fns, repeats, clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time this process's CPU time instead of wall time (steadier on a "
                        "shared machine; use with --threads 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batch, steps, hidden, inputs, n_layers = (64, 512, 256, 32, 3)
    if args.quick:
        batch, steps, hidden = 8, 64, 32
    print(f"machine: {machine()}; {'CPU' if args.cpu_time else 'wall'} time, median of "
          f"{args.repeats} round-robin runs")
    print(f"{n_layers} layers, batch {batch}, T={steps}, hidden {hidden}, input {inputs}, "
          "CPU float32; targets: grad internals <= 1.35x grad forward; no-grad internals <= "
          "the loop keeping c and 4 gates and <= 2.3x plain")
    x = torch.randn(steps, batch, inputs)
    for kind in (nn.LSTM, nn.GRU):
        torch.manual_seed(0)
        model = kind(inputs, hidden, num_layers=n_layers).eval()
        clock = time.process_time if args.cpu_time else time.perf_counter
        times = rows(model, x, args.repeats, clock)
        base, base_grad = times["plain forward (no grad)"], times["plain forward (grad)"]
        print(f"\n{kind.__name__}{'':<38} {'time':>9}  {'/plain':>6} {'/grad fwd':>9}")
        for name, t in times.items():
            print(f"  {name:<42} {t * 1e3:9.1f} ms {t / base:5.2f}x {t / base_grad:8.2f}x")


if __name__ == "__main__":
    main()
