"""The fixed cost of one recording: ``seqacts.extract()`` on small forwards, where it dominates.

Three small models (a 1-layer LSTM over 4 x 16 steps, a 2-layer GRU in a wrapper with a head,
a 16-step LSTMCell loop), each timed as a plain ``torch.no_grad()`` forward and as
``seqacts.extract()``, round-robin, in this process's CPU time with one thread. Prints the
milliseconds, the ratio to the plain forward and the difference (the fixed cost). Asserts
nothing about time. ``--quick`` uses fewer repeats, for a smoke run; ``--profile NAME`` prints
a cProfile of extract() on that model instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, timed_together  # noqa: E402

import seqacts  # noqa: E402


class Wrapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(8, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class CellLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], 16)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return h


def models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    return {
        "LSTM 1 layer, 4 x 16 steps": (nn.LSTM(8, 16, batch_first=True).eval(),
                                       torch.randn(4, 16, 8)),
        "GRU 2 layers + head": (Wrapped().eval(), torch.randn(4, 16, 8)),
        "LSTMCell loop, 16 steps": (CellLoop().eval(), torch.randn(4, 16, 8)),
    }


def runners(model: nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    def plain() -> object:
        with torch.no_grad():
            return model(x)

    def extract() -> object:
        return seqacts.extract(model, x)

    return {"plain": plain, "extract": extract}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--profile", metavar="NAME", help="profile extract() on the model "
                        "whose name starts with NAME")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    repeats = 5 if args.quick else args.repeats
    if args.profile:
        model, x = next(v for k, v in models().items() if k.startswith(args.profile))
        extract = runners(model, x)["extract"]
        extract()
        profile = cProfile.Profile()
        profile.runcall(lambda: [extract() for _ in range(repeats)])
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
        return
    print(f"machine: {machine()}; CPU time, median of {repeats}")
    print("| model | plain forward | extract() | ratio | fixed cost |")
    print("|---|---|---|---|---|")
    for name, (model, x) in models().items():
        t = timed_together(runners(model, x), repeats, clock=time.process_time)
        print(f"| {name} | {t['plain'] * 1e3:.2f} ms | {t['extract'] * 1e3:.2f} ms | "
              f"{t['extract'] / t['plain']:.1f}x | {(t['extract'] - t['plain']) * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
