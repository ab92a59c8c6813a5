"""``report(ds, out, model=, inputs=, score=)``: the report runs the ablation scan of the units it
ranks. A hand-built LSTM whose units do not talk to each other (no recurrent weights) and whose
score reads unit 1 only: the anomalies move unit 1, so ablating it must change the score by
exactly minus the score, and ablating any other unit must not change it at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import seqacts
from seqacts.viz.report import report

N, T, H = 30, 12, 3
KINDS = ("spike", "shift")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(2, H, batch_first=True)
        with torch.no_grad():
            for p in self.rnn.parameters():
                p.zero_()
            w = self.rnn.weight_ih_l0.view(4, H, 2)  # gates i, f, g, o; units; inputs
            w[:, 1, 0] = torch.tensor([1.0, 1.0, 2.0, 1.0])  # unit 1 reads channel 0
            w[:, 0, 1] = w[:, 2, 1] = torch.tensor([1.0, 1.0, 1.0, 1.0])  # 0 and 2: channel 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def score(y: torch.Tensor) -> torch.Tensor:
    return y[:, :, 1].abs().sum(1)


def _data() -> tuple[nn.Module, torch.Tensor, xr.Dataset]:
    rng = np.random.default_rng(3)
    kinds = np.array(["normal", *KINDS] * (N // 3))
    mask = np.zeros((N, T), dtype=bool)
    for s, kind in enumerate(kinds):
        start = 5 + s % 3
        mask[s, start : start + 2 if kind == "spike" else T] = kind != "normal"
    x = rng.normal(0, 0.3, (N, T, 2))
    x[..., 0] += 2.0 * mask
    model = Net().double().eval()
    inputs = torch.from_numpy(x)
    ds = seqacts.extract(model, inputs)
    ds = ds.assign_coords(anomaly=("sample", kinds), is_anomaly=("sample", kinds != "normal"))
    ds["anomaly_mask"] = (("sample", "time"), mask)
    return model, inputs, ds


@pytest.fixture(scope="module")
def data() -> tuple[nn.Module, torch.Tensor, xr.Dataset]:
    return _data()


def test_report_with_a_model_finds_the_unit_that_drives_the_score(data, tmp_path) -> None:
    model, inputs, ds = data
    path = report(ds, tmp_path, group="anomaly", model=model, inputs=inputs, score=score, top=1)
    text = path.read_text()
    with torch.no_grad():
        plain = score(model(inputs)).numpy()  # ablating unit 1 zeroes the score
    kinds = ds["anomaly"].values
    with xr.open_dataset(tmp_path / "ablation.nc") as scan:
        effect = scan["effect"].sel(layer="rnn.l0", direction="forward").load()
    np.testing.assert_allclose(effect.sel(unit=1).values, -plain, rtol=1e-9, atol=1e-12)
    # top=1: the report scanned only the unit it ranked first for each kind
    assert np.isnan(effect.sel(unit=[0, 2]).values).all()
    assert "No ablation scan given" not in text
    for kind in KINDS:
        assert f"[{kind}] rnn.l0 u1</td>" in text  # ranked first by its localized effect
        on = -plain[kinds == kind].mean()
        off = -plain[kinds == "normal"].mean()
        assert f"ablation effect on {kind}" in text
        assert f"<td>{on:+.4g}</td><td>{off:+.4g}</td>" in text  # this kind, then the baseline
    assert on < off < 0  # the anomalies move unit 1 further: its ablation costs more


def test_report_with_a_model_shows_no_effect_for_units_that_do_not_drive_it(data, tmp_path):
    model, inputs, ds = data
    report(ds, tmp_path, group="is_anomaly", model=model, inputs=inputs, score=score)
    with xr.open_dataset(tmp_path / "ablation.nc") as scan:
        effect = scan["effect"].sel(layer="rnn.l0", direction="forward").load()
    assert np.isfinite(effect.values).all()  # top=15 ranks all three units
    np.testing.assert_array_equal(effect.sel(unit=[0, 2]).values, 0.0)
    assert (effect.sel(unit=1).values < 0).all()


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"inputs": "short"}, seqacts.InputError, f"but the dataset has {N}"),
        ({"score": None}, seqacts.OptionError, "need score="),
        ({"inputs": None}, seqacts.OptionError, "needs model= and inputs= together"),
        ({"ablation": xr.Dataset()}, seqacts.OptionError, "not both"),
        ({"inputs": "numpy"}, seqacts.ArgumentTypeError, r"torch.from_numpy\(x\)"),
        ({"group": None}, seqacts.GroupError, "pass group="),
    ],
)
def test_bad_model_arguments_name_the_fix_before_writing(data, tmp_path, change, error, match):
    model, inputs, ds = data
    kwargs = {"group": "anomaly", "model": model, "inputs": inputs, "score": score, **change}
    if change.get("inputs") == "short":
        kwargs["inputs"] = inputs[:-1]
    elif change.get("inputs") == "numpy":
        kwargs["inputs"] = inputs.numpy()
    if "group" in change:
        ds = ds.drop_vars("is_anomaly")  # no default group either
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        report(ds, out, **kwargs)
    assert not out.exists()


def test_sequence_first_models_count_samples_along_dim_1(tmp_path) -> None:
    lstm = nn.LSTM(2, H).double()  # batch_first=False: inputs are (time, sample, feature)
    x = torch.randn(T, 6, 2, dtype=torch.float64)
    ds = seqacts.extract(lstm, x).assign_coords(is_anomaly=("sample", np.arange(6) >= 3))
    with pytest.raises(seqacts.InputError, match="along dim 1"):
        report(ds, tmp_path / "r", model=lstm, inputs=x[:, :5], score=lambda y: y[0].sum((0, 2)))
    assert not Path(tmp_path / "r").exists()


def test_a_failing_report_keeps_the_earlier_scan_and_creates_nothing(data, tmp_path) -> None:
    model, inputs, ds = data
    report(ds, tmp_path, group="anomaly", model=model, inputs=inputs, score=score, top=1)
    saved = (tmp_path / "ablation.nc").read_bytes()
    model.train()
    model.zero_grad()
    score(model(inputs)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    calls = []

    def failing(y: torch.Tensor) -> torch.Tensor:  # the unedited score, then a failing scan
        calls.append(y.shape)
        if len(calls) > 1:
            raise RuntimeError("score failed")
        return score(y)

    with pytest.raises(RuntimeError, match="score failed"):
        report(ds, tmp_path, group="anomaly", model=model, inputs=inputs, score=failing, top=1)
    assert (tmp_path / "ablation.nc").read_bytes() == saved
    assert len(calls) == 2 and model.training
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    model.eval()
    model.zero_grad(set_to_none=True)
    with pytest.raises(Exception, match="no_such_group"):
        report(ds, tmp_path / "new", group="no_such_group")
    assert not (tmp_path / "new").exists()
