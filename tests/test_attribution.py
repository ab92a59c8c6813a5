"""``input_attribution`` against gradients taken by hand in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqacts
from seqacts import OptionError

T, N, F = 6, 3, 2


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(F, 4, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=T)
        return self.head(out).squeeze(-1)  # (N, T)


def _score(y: torch.Tensor) -> torch.Tensor:
    return torch.tanh(y).pow(2).sum(1)


def _grad(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    leaf = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_score(model(leaf, lengths)).sum(), leaf)
    return g.numpy()


@pytest.fixture
def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(2)
    return Net().double(), torch.randn(N, T, F, dtype=torch.float64), torch.tensor([6, 4, 5])


def test_saliency_and_gradient_x_input_are_the_input_gradient(setup) -> None:
    model, x, lengths = setup
    g = _grad(model, x, lengths)
    sal = seqacts.input_attribution(model, (x, lengths), _score, method="saliency")
    assert sal.dims == ("sample", "time", "feature") and sal.shape == (N, T, F)
    np.testing.assert_allclose(sal.values, np.abs(g), rtol=1e-10, atol=1e-12)
    assert np.isnan(sal["convergence_delta"]).all()
    gxi = seqacts.input_attribution(model, {"x": x, "lengths": lengths}, _score,
                                    method="gradient_x_input")  # fmt: skip
    np.testing.assert_allclose(gxi.values, x.numpy() * g, rtol=1e-10, atol=1e-12)
    assert (gxi.values[1, 4:] == 0).all()  # past sample 1's length the input does nothing


def test_integrated_gradients_is_the_path_integral_of_the_gradient(setup) -> None:
    model, x, lengths = setup
    base = torch.full_like(x, 0.3)
    ig = seqacts.input_attribution(model, (x, lengths), _score, baseline=base, steps=24)
    nodes, weights = np.polynomial.legendre.leggauss(24)  # on [-1, 1]
    alphas, weights = (nodes + 1) / 2, weights / 2
    expected = sum(w * _grad(model, base + a * (x - base), lengths)
                   for a, w in zip(alphas, weights, strict=True)) * (x - base).numpy()
    np.testing.assert_allclose(ig.values, expected, rtol=1e-6, atol=1e-9)
    with torch.no_grad():
        gap = (_score(model(x, lengths)) - _score(model(base, lengths))).numpy()
    delta = ig.values.sum(axis=(1, 2)) - gap
    np.testing.assert_allclose(ig["convergence_delta"].values, delta, atol=1e-9)
    assert np.abs(delta).max() < 1e-3 * np.abs(gap).max()  # completeness holds closely


def test_sequence_first_input_and_errors() -> None:
    torch.manual_seed(1)
    lstm = nn.LSTM(F, 3).double()  # (time, sample, feature)
    x = torch.randn(T, N, F, dtype=torch.float64)

    def score(y: tuple) -> torch.Tensor:
        return y[0][-1].pow(2).sum(1)

    sal = seqacts.input_attribution(lstm, x, score, method="gradient_x_input")
    leaf = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(score(lstm(leaf)).sum(), leaf)
    np.testing.assert_allclose(sal.values, (x * g).permute(1, 0, 2).numpy(), rtol=1e-10)
    with pytest.raises(OptionError, match="method"):
        seqacts.input_attribution(lstm, x, score, method="shap")
    with pytest.raises(seqacts.EditError, match="one value per sample"):
        seqacts.input_attribution(lstm, x, lambda y: y[0], method="saliency")
    with pytest.raises(OptionError, match="steps"):
        seqacts.input_attribution(lstm, x, score, steps=0)


def test_without_captum_the_error_names_the_extra(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "captum.attr", None)  # import captum.attr now fails
    lstm = nn.GRU(F, 3, batch_first=True)
    with pytest.raises(seqacts.MissingDependencyError, match=r"seqacts\[explain\]"):
        seqacts.input_attribution(lstm, torch.randn(N, T, F), lambda y: y[0].sum((1, 2)))
