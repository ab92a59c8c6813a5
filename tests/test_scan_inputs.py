"""``ablation_scan`` of models that take more than one input: ``model(x, lengths)`` packing inside,
``model(**batch)`` with covariates and an initial state, a bare ``nn.LSTM`` called with
``(h0, c0)``. Each unit's effect must equal a separate edited forward's
(``with intervene(model, ablate(layer, u)): score(model(...))``) in float64, and bad inputs must
raise errors that name the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqacts
from seqacts.interventions.scan_inputs import scan_inputs

N, T, N_IN, H, LAYERS = 5, 7, 3, 4, 2
T_FUTURE, N_FUTURE = 6, 2
TOL = 1e-9


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


class PackedModel(nn.Module):
    """``model(x, lengths, scale)``: variable-length samples, packed in unsorted order."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.LSTM(N_IN, H, num_layers=LAYERS, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * H, N_IN)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, scale: float) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        y, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.head(y) * scale


class DictModel(nn.Module):
    """``model(**batch)``: an encoder started from a given ``(h0, c0)`` (batch at dim 1), a decoder
    over future covariates, a name that is not a tensor."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.encoder = nn.LSTM(N_IN, H, num_layers=LAYERS, batch_first=True)
        self.decoder = nn.GRU(N_FUTURE, H, num_layers=LAYERS, batch_first=True)
        self.head = nn.Linear(H, 1)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                future: torch.Tensor, name: str) -> dict[str, torch.Tensor]:  # fmt: skip
        assert name == "demand"
        _, (h, _) = self.encoder(x, state)
        y, _ = self.decoder(future, h)
        return {"prediction": self.head(y), "name": name}


def _packed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([7, 3, 5, 2, 6])
    x = _randn(N, T, N_IN, seed=2)
    x[torch.arange(T)[None, :] >= lengths[:, None]] = 0.0
    return x, lengths


def _dict_batch() -> dict[str, object]:
    return {"x": _randn(N, T, N_IN, seed=3),
            "state": (_randn(LAYERS, N, H, seed=4), _randn(LAYERS, N, H, seed=5)),
            "future": _randn(N, T_FUTURE, N_FUTURE, seed=6), "name": "demand"}  # fmt: skip


def _call(model: nn.Module, x: object) -> object:
    if isinstance(x, dict):
        return model(**x)
    return model(*x) if isinstance(x, tuple) else model(x)


def _assert_scan_equals_edited_forwards(model, x, score, scan) -> None:
    with torch.no_grad():
        base = np.asarray(score(_call(model, x)), dtype=np.float64)
    checked = 0
    for label in scan["layer"].values:
        n_dir = int(scan["n_directions"].sel(layer=label))
        for direction in scan["direction"].values[:n_dir]:
            for unit in range(int(scan["n_units"].sel(layer=label))):
                edit = seqacts.ablate(str(label), unit, direction=str(direction))
                with torch.no_grad(), seqacts.intervene(model, edit):
                    expected = np.asarray(score(_call(model, x)), dtype=np.float64) - base
                got = scan.effect.sel(layer=label, direction=direction, unit=unit).values
                np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)
                checked += 1
    assert checked == int((scan["n_units"] * scan["n_directions"]).sum())
    assert np.abs(scan.effect.values[np.isfinite(scan.effect.values)]).max() > 1e-3


def test_scan_of_a_model_called_with_lengths_packing_inside() -> None:
    model = PackedModel().double().eval()
    x, lengths = _packed_batch()
    valid = (torch.arange(T)[None, :] < lengths[:, None])[..., None]

    def score(y: torch.Tensor) -> torch.Tensor:
        return ((y - x) ** 2 * valid).sum((1, 2))

    # 16 units in chunks of 5: the batch and its lengths repeated 5 times, then once
    scan = seqacts.ablation_scan(model, (x, lengths, 0.5), score, batch_units=5)
    assert scan.effect.sizes == {"sample": N, "layer": LAYERS, "direction": 2, "unit": H}
    _assert_scan_equals_edited_forwards(model, (x, lengths, 0.5), score, scan)
    as_list = seqacts.ablation_scan(model, [x, lengths, 0.5], score, layers="rnn.l1",
                                   batch_units=3)
    np.testing.assert_allclose(as_list.effect.values, scan.effect.sel(layer=["rnn.l1"]).values,
                               atol=TOL, rtol=0)  # fmt: skip


def test_scan_of_a_model_called_with_a_dict_batch() -> None:
    model = DictModel().double().eval()
    batch = _dict_batch()
    inputs = scan_inputs(model, batch)
    # x and future along dim 0, h0 and c0 of shape (layers, n, hidden) along dim 1; name as is
    assert inputs.n == N and inputs.dims == {("x",): 0, ("state", 0): 1, ("state", 1): 1,
                                             ("future",): 0}  # fmt: skip
    target = _randn(N, T_FUTURE, 1, seed=7)

    def score(y: dict[str, torch.Tensor]) -> torch.Tensor:
        assert y["name"] == "demand"
        return ((y["prediction"] - target) ** 2).mean((1, 2))

    scan = seqacts.ablation_scan(model, batch, score, batch_units=3)
    assert list(scan["layer"].values) == ["encoder.l0", "encoder.l1", "decoder.l0", "decoder.l1"]
    _assert_scan_equals_edited_forwards(model, batch, score, scan)


def test_a_sequence_first_lstm_with_an_initial_state() -> None:
    lstm = nn.LSTM(N_IN, H, num_layers=LAYERS).double().eval()  # batch at dim 1 everywhere
    n = LAYERS  # as many samples as layers: h0's dims 0 and 1 both have the batch's size
    x = _randn(T, n, N_IN, seed=8)
    state = (_randn(LAYERS, n, H, seed=9), _randn(LAYERS, n, H, seed=10))

    def score(y: tuple) -> torch.Tensor:
        return y[0].pow(2).sum((0, 2))

    with pytest.raises(seqacts.EditError, match=r"x\[1\]\[0\]: shape \(2, 2, 4\) has 2 dims of "
                       r"size 2, .* ambiguous; pass batch_dims=\{1: dim\}"):  # fmt: skip
        seqacts.ablation_scan(lstm, (x, state), score)
    scan = seqacts.ablation_scan(lstm, (x, state), score, batch_dims={1: 1}, batch_units=3)
    assert scan.effect.sizes["sample"] == n
    _assert_scan_equals_edited_forwards(lstm, (x, state), score, scan)


@pytest.mark.parametrize(
    ("x", "batch_dims", "match"),
    [
        (np.zeros((N, T, N_IN)), None, r"got ndarray; pass torch.from_numpy\(x\)"),
        ((3, "a", None), None, r"no tensor holding samples among the model's arguments \(int, "
                               r"str, NoneType\)"),
        ({"x": _randn(N, T, N_IN, seed=1)}, {"x": None}, "no tensor holding samples"),
        ((_randn(N, T, N_IN, seed=1), ((torch.ones(N),),)), None, r"x\[1\]\[0\]: arguments nested "
                                                                  "more than one level deep"),
        ((_randn(N, T, N_IN, seed=1), torch.ones(N, N)), None, r"x\[1\]: shape \(5, 5\) has 2 "
                                                               "dims of size 5"),
        ((_randn(N, T, N_IN, seed=1), torch.ones(N)), {2: 0}, r"batch_dims: 2 is not an argument"),
        ((_randn(N, T, N_IN, seed=1), torch.ones(N)), {1: 1}, "no dim 1 to hold the samples"),
        ((_randn(N, T, N_IN, seed=1), torch.ones(2, N)), {1: 0}, r"size 2 along dim 0, not the "
                                                                 "5 samples"),
        ((_randn(N, T, N_IN, seed=1), torch.ones(N)), {1: "0"}, "as an int, or None"),
        ({0: _randn(N, T, N_IN, seed=1)}, None, "keys must be strings"),
        ((_randn(N, T, N_IN, seed=1), np.arange(N)), None, r"x\[1\]: a ndarray of shape \(5,\) "
                                                           r"has the size of the batch \(5\)"),
        (torch.zeros(()), None, r"x: shape \(\) has no dim 0"),
    ],
)
def test_bad_inputs_name_the_problem_and_the_fix(x, batch_dims, match) -> None:
    model = PackedModel().double()
    with pytest.raises(seqacts.EditError, match=match):
        seqacts.ablation_scan(model, x, lambda y: y.sum((1, 2)), batch_dims=batch_dims)


def test_packed_sequences_are_refused_with_the_fix() -> None:
    x, lengths = _packed_batch()
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    lstm = nn.LSTM(N_IN, H, batch_first=True).double()
    for given in (packed, (packed,)):
        with pytest.raises(seqacts.EditError, match="PackedSequence cannot be repeated .* pack "
                           "them inside the model"):  # fmt: skip
            seqacts.ablation_scan(lstm, given, lambda y: y[0].data.sum())


def test_tensors_without_the_batch_size_and_other_values_pass_unchanged() -> None:
    x, lengths = _packed_batch()
    table = torch.ones(3, 2)
    inputs = scan_inputs(PackedModel(), (x, lengths, table, 0.5, {"k": table, "n": lengths}))
    assert inputs.dims == {(0,): 0, (1,): 0, (4, "n"): 0}
    copies = inputs.repeated(3)
    assert copies.n == 3 * N and copies.first.shape == (3 * N, T, N_IN)
    assert torch.equal(copies.args[1], lengths.repeat(3)) and copies.args[2] is table
    assert copies.args[3] == 0.5 and copies.args[4]["k"] is table
    assert torch.equal(copies.args[4]["n"], lengths.repeat(3))
    assert inputs.nbytes == x.nbytes + 2 * lengths.nbytes
    # batch_dims None: an argument passed unchanged, even with the batch's size
    kept = scan_inputs(PackedModel(), (x, np.arange(N), lengths), batch_dims={1: None, 2: None})
    assert kept.dims == {(0,): 0}
