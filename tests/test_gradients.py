"""``extract(..., gradients=score)``: grad_h / grad_c against an independent float64 step loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from grad_reference import reference_cell_grads, reference_stack_grads
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqacts
from seqacts import OptionError

T, N, F, H = 5, 3, 2, 4
LENGTHS = [5, 3, 4]
KINDS = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN_TANH": nn.RNN, "RNN_RELU": nn.RNN}


class Net(nn.Module):
    """A stack run on padded or packed input; returns the top output, zeros past lengths."""

    def __init__(self, rnn: nn.RNNBase, packed: bool) -> None:
        super().__init__()
        self.rnn, self.packed = rnn, packed

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            return self.rnn(x)[0]
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=T)
        return out


class CellNet(nn.Module):
    def __init__(self, cell: nn.RNNCellBase) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], self.cell.hidden_size, dtype=x.dtype)
        state: object = (h, torch.zeros_like(h)) if isinstance(self.cell, nn.LSTMCell) else h
        seq = []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)  # type: ignore[arg-type]
            seq.append(state[0] if isinstance(state, tuple) else state)
        return torch.stack(seq, 1)


def _weights(width: int) -> torch.Tensor:
    return torch.linspace(-1.0, 1.5, T * width, dtype=torch.float64).reshape(1, T, width)


def _score(y: torch.Tensor) -> torch.Tensor:
    w = _weights(y.shape[-1])
    return (torch.tanh(y) * w + 0.5 * y**2).sum(dim=(1, 2))


def _close(actual: np.ndarray, expected: np.ndarray) -> None:
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6 * scale)


CASES = [(kind, bi, proj, packed) for kind in KINDS for bi in (False, True)
         for proj in ((False, True) if kind == "LSTM" else (False,)) for packed in (False, True)]


@pytest.mark.parametrize(("kind", "bidirectional", "proj", "packed"), CASES)
def test_stack_gradients_match_reference(kind: str, bidirectional: bool, proj: bool,
                                         packed: bool) -> None:
    torch.manual_seed(3)
    extra = {"proj_size": 2} if proj else {}
    if kind.startswith("RNN"):
        extra["nonlinearity"] = kind[4:].lower()
    rnn = KINDS[kind](F, H, 2, batch_first=True, bidirectional=bidirectional, **extra).double()
    model = Net(rnn, packed)
    x = torch.randn(N, T, F, dtype=torch.float64)
    lengths = torch.tensor(LENGTHS if packed else [T] * N)
    ds = seqacts.extract(model, x, lengths, gradients=_score)
    gh, gc = reference_stack_grads(rnn, x, lengths.tolist(), _score)
    h_out = 2 if proj else H
    for (k, d), expected in gh.items():
        got = ds["grad_h"].isel(layer=k, direction=d).values  # (sample, time, unit)
        for i, length in enumerate(lengths.tolist()):
            _close(got[i, :length, :h_out], expected[i, :length].numpy())
            assert np.isnan(got[i, length:]).all() and np.isnan(got[i, :, h_out:]).all()
    assert ("grad_c" in ds) == (kind == "LSTM")
    for (k, d), expected in gc.items():
        got = ds["grad_c"].isel(layer=k, direction=d).values
        for i, length in enumerate(lengths.tolist()):
            _close(got[i, :length, :H], expected[i, :length].numpy())
    assert ds["grad_h"].dims == ds["h"].dims


@pytest.mark.parametrize("cell_type", [nn.LSTMCell, nn.GRUCell, nn.RNNCell])
def test_cell_loop_gradients_match_reference(cell_type: type[nn.RNNCellBase]) -> None:
    torch.manual_seed(4)
    cell = cell_type(F, H).double()
    x = torch.randn(N, T, F, dtype=torch.float64)
    ds = seqacts.extract(CellNet(cell), x, gradients=_score)
    gh, gc = reference_cell_grads(cell, x, _score)
    _close(ds["grad_h"].isel(layer=0, direction=0).values, gh.numpy())
    if gc is not None:
        _close(ds["grad_c"].isel(layer=0, direction=0).values, gc.numpy())


def test_gradients_leave_model_outputs_grads_and_rng_as_they_were() -> None:
    torch.manual_seed(5)
    rnn = nn.LSTM(F, H, 3, batch_first=True, dropout=0.5)
    model = Net(rnn, packed=False).train()
    x = torch.randn(N, T, F)
    lengths = torch.tensor([T] * N)
    marks = {name: torch.full_like(p, 7.0) for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.grad = marks[name].clone()
    torch.manual_seed(11)
    with pytest.warns(seqacts.TrainingModeWarning):
        plain = seqacts.extract(model, x, lengths)
    after_plain = torch.rand(3)
    torch.manual_seed(11)
    with pytest.warns(seqacts.TrainingModeWarning):
        ds = seqacts.extract(model, x, lengths, gradients=lambda y: y[:, -1].pow(2).sum(1))
    assert torch.equal(torch.rand(3), after_plain)  # the RNG moved as one forward moves it
    np.testing.assert_array_equal(ds["h"].values, plain["h"].values)  # bit-identical states
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.equal(p.grad, marks[name])
    # the gradient run drew the recorded run's dropout masks: d score / d h_top at the last
    # step is 2 * h there, from the recorded h
    top = ds["h"].isel(layer=-1, direction=0, time=-1).values
    np.testing.assert_allclose(ds["grad_h"].isel(layer=-1, direction=0, time=-1).values,
                               2 * top, rtol=1e-5, atol=1e-7)  # fmt: skip


def test_gradients_errors_name_the_fix() -> None:
    rnn = nn.GRU(F, H, batch_first=True)
    x = torch.randn(N, T, F)
    with pytest.raises(OptionError, match="one value per sample"):
        seqacts.extract(rnn, x, gradients=lambda y: y[0])
    with pytest.raises(OptionError, match="float tensor"):
        seqacts.extract(rnn, x, gradients=lambda y: y[0].detach().numpy().sum((1, 2)))
    with pytest.raises(OptionError, match="cells="):
        seqacts.extract(rnn, x, gradients=lambda y: y[0].sum((1, 2)), cells={"x": "y"})
    with pytest.raises(OptionError, match="edits="):
        seqacts.extract(rnn, x, gradients=lambda y: y[0].sum((1, 2)),
                        edits=seqacts.ablate("l0", 0))  # fmt: skip
