"""``report(..., model=, inputs=, score=)`` with a model called as ``model(x, lengths)`` (packing
inside) or ``model(**batch)``, and the report folder's ``ablation.nc``: present only when this
report ran the scan, or is the ``ablation=`` it shows. The model is ``test_report_model``'s
hand-built LSTM, whose score reads unit 1 only: ablating unit 1 changes the score by exactly
minus the score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from test_report_model import KINDS, N, Net, T, score
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqacts
from seqacts.viz.report import report
from seqacts.viz.report_scan import model_scan


class WithLengths(nn.Module):
    """``Net``'s LSTM on variable-length samples, packed in unsorted order."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = Net().rnn

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[1])
        return y


@pytest.fixture(scope="module")
def data() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor], xr.Dataset]:
    """Normal windows, spikes and shifts on input channel 0 (the one unit 1 reads), shorter by
    one step on every other sample."""
    kinds = np.array(["normal", *KINDS] * (N // 3))
    mask = np.zeros((N, T), dtype=bool)
    mask[kinds == "spike", 6:8] = True
    mask[kinds == "shift", 6:] = True
    x = np.random.default_rng(5).normal(0, 0.3, (N, T, 2))
    x[..., 0] += 2.0 * mask
    lengths = torch.tensor([T - s % 2 for s in range(N)])
    inputs = (torch.from_numpy(x), lengths)
    model = WithLengths().double().eval()
    ds = seqacts.extract(model, *inputs)
    assert ds.sizes["sample"] == N and ds["length"].values[:, 0].tolist() == lengths.tolist()
    ds = ds.assign_coords(anomaly=("sample", kinds), is_anomaly=("sample", kinds != "normal"))
    ds["anomaly_mask"] = (("sample", "time"), mask)
    return model, inputs, ds


def test_report_scans_a_model_called_with_lengths(data, tmp_path) -> None:
    model, inputs, ds = data
    with torch.no_grad():
        plain = score(model(*inputs)).numpy()
    path = report(ds, tmp_path, group="anomaly", model=model, inputs=inputs, score=score, top=1)
    with xr.open_dataset(tmp_path / "ablation.nc") as scan:
        effect = scan["effect"].sel(layer="rnn.l0", direction="forward").load()
    np.testing.assert_allclose(effect.sel(unit=1).values, -plain, rtol=1e-9, atol=1e-12)
    text = path.read_text()
    for kind in KINDS:
        assert f"[{kind}] rnn.l0 u1</td>" in text and f"ablation effect on {kind}" in text
    # the same inputs as keyword arguments
    scan = model_scan(ds, model, {"x": inputs[0], "lengths": inputs[1]}, score)
    by_name = scan({"rnn.l0": [1]}).effect.sel(layer="rnn.l0", direction="forward", unit=1)
    np.testing.assert_allclose(by_name.values, -plain, rtol=1e-9, atol=1e-12)


def test_a_rerun_without_a_model_removes_the_earlier_scan(data, tmp_path) -> None:
    model, inputs, ds = data
    saved = tmp_path / "ablation.nc"
    report(ds, tmp_path, group="anomaly", model=model, inputs=inputs, score=score, top=1)
    assert saved.exists()
    text = report(ds, tmp_path, group="anomaly").read_text()
    assert not saved.exists()  # the folder shows no effects this report did not compute
    assert "No ablation scan given" in text
    report(ds, tmp_path, group="anomaly", model=model, inputs=inputs, score=score, top=1)
    with xr.open_dataset(saved) as scan:  # shown as ablation=: the scan stays, it is used
        text = report(ds, tmp_path, group="anomaly", ablation=scan).read_text()
        assert "ablation effect on spike" in text
    assert saved.exists()
    with xr.open_dataset(saved) as scan:
        copy = scan.load()
    copy.encoding.pop("source")
    report(ds, tmp_path, group="anomaly", ablation=copy)
    assert not saved.exists()  # a scan from elsewhere is shown but not saved


def test_bad_inputs_are_refused_before_writing(data, tmp_path) -> None:
    model, (x, lengths), ds = data
    out = tmp_path / "out"
    with pytest.raises(seqacts.EditError, match=r"inputs\[1\]: shape \(30, 30\) has 2 dims of "
                       r"size 30, .* batch_dims=\{1: dim\}\) yourself and pass its result as "
                       r"report\(\.\.\., ablation=\)"):  # fmt: skip
        report(ds, out, group="anomaly", model=model, inputs=(x, torch.ones(N, N)), score=score)
    with pytest.raises(seqacts.EditError, match=r"inputs\[0\]: a ndarray .* torch.from_numpy"):
        report(ds, out, group="anomaly", model=model, inputs=(x.numpy(), lengths), score=score)
    with pytest.raises(seqacts.EditError, match="no tensor holding samples"):
        report(ds, out, group="anomaly", model=model, inputs=("x", 3), score=score)
    with pytest.raises(seqacts.InputError, match=r"29 samples along dim 0 of the first tensor"):
        report(ds, out, group="anomaly", model=model, inputs=(x[:-1], lengths[:-1]), score=score)
    assert not out.exists()
