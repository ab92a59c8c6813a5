"""Shared fixtures: small models every test file can use."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class Seq2Seq(nn.Module):
    """A GRU encoder and an LSTMCell decoder loop, with a Linear head."""

    def __init__(self, n_in: int = 3, hidden: int = 6, steps: int = 4) -> None:
        super().__init__()
        self.encoder = nn.GRU(n_in, hidden, num_layers=2, batch_first=True)
        self.decoder = nn.LSTMCell(1, hidden)
        self.head = nn.Linear(hidden, 1)
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.encoder(x)
        state = (h[-1], torch.zeros_like(h[-1]))
        y = x.new_zeros(x.shape[0], 1)
        ys = []
        for _ in range(self.steps):
            state = self.decoder(y, state)
            y = self.head(state[0])
            ys.append(y)
        return torch.cat(ys, 1)


@pytest.fixture
def seq2seq() -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq().eval()
