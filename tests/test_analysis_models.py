"""The analyses on datasets recorded from real small models (packed, bidirectional, cells)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqacts
from seqacts.viz.report import report


class Mixed(nn.Module):
    """Packed bidirectional LSTM with projections, then a GRU, then an RNNCell loop."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=4, batch_first=True)
        self.gru = nn.GRU(8, 5, batch_first=True)
        self.cell = nn.RNNCell(5, 7)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = pad_packed_sequence(y, batch_first=True)
        y, _ = self.gru(y)
        h = torch.zeros(x.shape[0], 7)
        for t in range(3):
            h = self.cell(y[:, t], h)
        return h


@pytest.fixture(scope="module")
def recorded() -> tuple[xr.Dataset, torch.Tensor, Mixed]:
    torch.manual_seed(0)
    model = Mixed().eval()
    x = torch.randn(9, 6, 3)
    lengths = torch.tensor([6, 3, 5, 1, 6, 2, 4, 6, 5])
    ds = seqacts.extract(model, x, lengths, internals=True)
    return ds.assign_coords(is_anomaly=("sample", np.arange(9) % 3 == 0)), lengths, model


def test_final_state_and_layer_agree_with_the_recording(recorded) -> None:
    ds, lengths, _ = recorded
    last = ds.seqacts.final_state()
    xr.testing.assert_allclose(last, ds["h_n"].where(ds["h_n"].notnull()), rtol=1e-5)
    top = ds.seqacts.layer("lstm.l1")
    assert top.sizes["unit"] == 6 and top.sizes["time"] == 6  # cell width (proj_size=4)
    assert np.isnan(top["h"].sel(unit=[4, 5])).all()
    assert (top["length"].values == lengths.numpy()).all()
    cell = ds.seqacts.layer("cell")
    assert "direction" not in cell.dims and cell.sizes["time"] == 3 and "preactivation" in cell


def test_analyses_run_on_mixed_kinds(recorded) -> None:
    ds, lengths, _ = recorded
    sat = ds.seqacts.saturation()
    assert np.isnan(sat["left"].sel(layer="cell")).all()  # an RNN cell has no sigmoid gates
    counts = sat["count"].sel(gate="forget_gate", layer="lstm.l0", direction="backward", unit=0)
    assert int(counts) == int(lengths.sum())
    table = ds.seqacts.summary()
    # the GRU reads the re-padded output: all 6 steps of every sample
    assert list(table["steps"].values) == [int(lengths.sum())] * 2 + [54, 27]
    assert list(table["width"].values) == [4, 4, 5, 7]
    jumps = ds.seqacts.step_change()
    assert jumps.sel(layer="lstm.l0").notnull().sum() == 2 * int(lengths.sum())
    ranked = ds.seqacts.compare("is_anomaly", feature="h_n")
    assert ranked.sizes["rank"] == 2 * 4 * 2 + 5 + 7
    score = ds.seqacts.distance(~ds["is_anomaly"], folds=3)
    assert score.dims == ("sample", "layer") and np.isfinite(score).all()


def test_report_of_a_mixed_model(recorded, tmp_path) -> None:
    ds, _, _ = recorded
    path = report(ds, tmp_path)
    text = path.read_text()
    assert "lstm.l1" in text and "RNNCell" in text and "ROC AUC" in text
