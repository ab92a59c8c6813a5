"""Interactions between recording features (cells=, chain=, edits=, labels, streams) that no
single feature's tests cover: each test here once failed on main."""

from __future__ import annotations

import copy
import pickle

import torch
from torch import nn

import seqacts


class TanhCell(nn.Module):
    """A Python cell ``h = tanh(W [x; h])``."""

    def __init__(self, n_in: int = 3, hidden: int = 4) -> None:
        super().__init__()
        self.lin = nn.Linear(n_in + hidden, hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(torch.cat([x, h], -1)))


class Mixed(nn.Module):
    """An LSTM followed by a Python cell looped over the steps."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 5, batch_first=True)
        self.cell = TanhCell()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rnn(x)
        h = torch.zeros(x.shape[0], 4)
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        return h


def _model() -> Mixed:
    torch.manual_seed(0)
    return Mixed().eval()


def test_copy_made_inside_record_with_edits_carries_no_hooks() -> None:
    model, x = _model(), torch.randn(2, 3, 3)
    with seqacts.record(model, cells={"cell": "h"}, edits=[seqacts.ablate("rnn.l0", units=[0])]):
        copied = copy.deepcopy(model)
        unpickled = pickle.loads(pickle.dumps(model))
        model(x)
    for m in (copied, unpickled):
        assert not m._forward_hooks and not m._forward_pre_hooks
