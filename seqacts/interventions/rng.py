"""Torch's random state kept across several forwards of one model (``extract(gradients=)``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["rng_kept"]


def _devices_of(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


@contextmanager
def rng_kept(model: nn.Module) -> Iterator[Callable[[], None]]:
    """Yield ``rewind()``, which puts torch's RNG back to where it was on entry.

    On exit the RNG is where the first forward left it, so a caller sees one forward's worth
    of random numbers drawn however many times the model ran in between.
    """
    devices = _devices_of(model)
    cpu = torch.random.get_rng_state()
    cuda = [torch.cuda.get_rng_state(d) for d in devices]
    after: list[tuple[Tensor, list[Tensor]]] = []

    def rewind() -> None:
        if not after:
            after.append((torch.random.get_rng_state(),
                          [torch.cuda.get_rng_state(d) for d in devices]))  # fmt: skip
        torch.random.set_rng_state(cpu)
        for d, state in zip(devices, cuda, strict=True):
            torch.cuda.set_rng_state(state, d)

    try:
        yield rewind
    finally:
        if after:
            torch.random.set_rng_state(after[0][0])
            for d, state in zip(devices, after[0][1], strict=True):
                torch.cuda.set_rng_state(state, d)
