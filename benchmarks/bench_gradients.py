"""Cost of ``extract(..., gradients=score)`` and of ``input_attribution``.

A 3-layer LSTM (batch 32, T=256, hidden 64, input 8, CPU float32), score the mean square of
the top layer's output per sample. Rows, each as a ratio to one forward + backward of the plain
model (``score(model(x)).sum().backward()``):

- ``extract()``: a plain recording (one no-grad forward);
- ``extract(gradients=)``: the recording, plus the probed forward (every layer run step by
  step through its kind's cell kernel, each step's state hooked) and its backward, plus the
  cheap forward that lays the gradients out (goal <= 3x);
- ``input_attribution`` with ``saliency`` (one forward + backward) and with integrated
  gradients at ``steps=8`` (a batch 8 times larger).

Prints ratios measured in one run (rows timed round-robin); asserts nothing about time.
``--threads 1 --cpu-time`` measures the work done, steady on a machine shared with other jobs.
``--quick`` shrinks the sizes for a smoke run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_args, machine, timed_together  # noqa: E402

import seqacts  # noqa: E402


def main() -> None:
    args = bench_args(__doc__, cpu_time=True)
    batch, steps, hidden, inputs, n_layers = (32, 256, 64, 8, 3)
    if args.quick:
        batch, steps, hidden = 4, 16, 8
    torch.manual_seed(0)
    model = nn.LSTM(inputs, hidden, num_layers=n_layers, batch_first=True).eval()
    x = torch.randn(batch, steps, inputs)

    def score(y: tuple) -> torch.Tensor:
        return y[0].pow(2).mean(dim=(1, 2))

    def plain() -> object:
        model.zero_grad(set_to_none=True)
        total = score(model(x)).sum()
        total.backward()
        return total

    t = timed_together({
        "plain": plain,
        "extract": lambda: seqacts.extract(model, x),
        "gradients": lambda: seqacts.extract(model, x, gradients=score),
        "saliency": lambda: seqacts.input_attribution(model, x, score, method="saliency"),
        "ig": lambda: seqacts.input_attribution(model, x, score, steps=8),
    }, args.repeats, time.process_time if args.cpu_time else time.perf_counter)  # fmt: skip
    base = t["plain"]
    print(f"machine: {machine()}")  # sizes first, then one row per measurement
    print(f"model: LSTM {n_layers} layers, batch {batch}, T={steps}, hidden {hidden}, "
          f"input {inputs}, CPU float32; {'CPU' if args.cpu_time else 'wall'} time")
    rows = [("plain forward + backward", "plain", ""),
            ("extract()", "extract", ""),
            ("extract(gradients=score)", "gradients", "   (goal <= 3x)"),
            ("input_attribution saliency", "saliency", ""),
            ("input_attribution IG, 8 steps", "ig", "")]  # fmt: skip
    for label, key, note in rows:
        print(f"{label:30s} {t[key] * 1e3:9.1f} ms   {t[key] / base:.2f}x{note}")


if __name__ == "__main__":
    main()
