"""Interactions between recording features (cells=, chain=, edits=, labels, streams) that no
single feature's tests cover: each test here once failed on main."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module

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


class OwnMathLSTMCell(nn.LSTMCell):
    """A torch LSTM cell subclass whose forward has its own math: torch's kernel never runs."""

    def forward(self, x: torch.Tensor, hc: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        assert hc is not None
        h, c = hc
        i, f, g, o = (x @ self.weight_ih.T + h @ self.weight_hh.T + self.bias_ih
                      + self.bias_hh).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class OwnMathLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = OwnMathLSTMCell(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hc = (torch.zeros(x.shape[0], 4), torch.zeros(x.shape[0], 4))
        for t in range(x.shape[1]):
            hc = self.cell(x[:, t], hc)
        return hc[0]


def test_edit_of_a_cell_whose_forward_bypasses_the_kernel_is_refused_not_ignored() -> None:
    torch.manual_seed(0)
    model, x = OwnMathLoop().eval(), torch.randn(2, 3, 3)
    edit = seqacts.ablate("cell", units=[0])
    with pytest.raises(seqacts.EditError, match="cell"):
        seqacts.extract(model, x, edits=[edit])
    with pytest.raises(seqacts.EditError, match="cell"), seqacts.intervene(model, [edit]):
        model(x)
    assert not torch_module._global_forward_hooks and not torch_module._global_forward_pre_hooks


def test_edits_on_kernel_layers_still_run_on_empty_batches() -> None:
    model = _model()
    ds = seqacts.extract(model, torch.randn(0, 3, 3), cells={"cell": "h"},
                         edits=[seqacts.ablate("rnn.l0", units=[0])])
    assert ds.sizes["sample"] == 0


def test_edit_naming_a_cells_layer_says_it_is_a_python_cell() -> None:
    model = _model()
    with pytest.raises(seqacts.EditError, match="Python cell"):
        seqacts.record(model, cells={"cell": "h"}, edits=[seqacts.ablate("cell", units=[0])])


def test_a_torch_cell_named_in_cells_is_still_edited() -> None:
    torch.manual_seed(0)
    model, x = nn.Sequential(), torch.randn(2, 3, 3)
    model.cell = nn.GRUCell(3, 4)

    def loop(x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], 4)
        for t in range(x.shape[1]):
            h = model.cell(x[:, t], h)
        return h

    with seqacts.record(model, cells={"cell": "h"},
                        edits=[seqacts.ablate("cell", units=[0])]) as rec:
        loop(x)
    assert (rec.to_dataset().h.sel(layer="cell", unit=0) == 0).all()
