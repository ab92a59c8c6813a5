"""A batch of 0 samples records a dataset with ``sample`` of size 0: every variable, with the
other dims a batch with samples has, saved to netCDF and read back unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import xarray as xr
from torch import nn

import seqacts
from tests.test_cells import N_IN, H, LayerNormLSTMCell, Loop, T


class CellLoop(nn.Module):
    """An ``LSTMCell`` stepped over time, then a linear head on the last state."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(8, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], 4)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return self.head(h)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(8, 4, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])


CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[int], torch.Tensor], dict]] = {
    "lstm-bi-2": (lambda: nn.LSTM(8, 4, num_layers=2, bidirectional=True, batch_first=True),
                  lambda n: torch.randn(n, 6, 8), {"internals": True}),
    "lstm-proj-time-major": (lambda: nn.LSTM(8, 4, proj_size=2),
                             lambda n: torch.randn(6, n, 8), {"internals": True}),
    "rnn-relu": (lambda: nn.RNN(8, 4, nonlinearity="relu", batch_first=True),
                 lambda n: torch.randn(n, 6, 8), {"internals": True}),
    "gru-modules": (Encoder, lambda n: torch.randn(n, 6, 8), {"modules": "head"}),
    "cell-loop": (CellLoop, lambda n: torch.randn(n, 6, 8), {"internals": True,
                                                             "modules": "head"}),
    "python-cell": (lambda: Loop(LayerNormLSTMCell(N_IN, H)), lambda n: torch.randn(n, T, N_IN),
                    {"cells": {"cell": "h,c"}, "internals": True}),
    "gru-grad-edits": (lambda: nn.GRU(8, 4, batch_first=True), lambda n: torch.randn(n, 6, 8),
                       {"grad": True, "internals": True, "edits": seqacts.ablate("l0", 1)}),
}  # fmt: skip


def _bare(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_attrs(deep=False)


@pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")
@pytest.mark.parametrize("case", sorted(CASES))
def test_an_empty_batch_gives_a_dataset_of_no_samples(case: str, tmp_path: Path) -> None:
    make, inputs, options = CASES[case]
    torch.manual_seed(0)
    model = make().eval()
    empty = seqacts.extract(model, inputs(0), **options)
    full = seqacts.extract(model, inputs(3), **options)
    assert empty.sizes["sample"] == 0 and full.sizes["sample"] == 3
    # the same variables, dims, dtypes, coordinates and attributes as a batch with samples
    xr.testing.assert_identical(_bare(empty), _bare(full.isel(sample=slice(0, 0))))
    assert {k: v for k, v in empty.attrs.items() if k != "created"} == {
        k: v for k, v in full.attrs.items() if k != "created"}
    empty.to_netcdf(tmp_path / "empty.nc")
    with xr.open_dataset(tmp_path / "empty.nc") as back:
        xr.testing.assert_identical(back.load(), empty)


def test_record_and_stream_an_empty_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.LSTM(8, 4, num_layers=2, batch_first=True).eval()
    x = torch.randn(0, 50, 8)
    with seqacts.record(model, internals=True) as rec:
        model(x)
    ds = rec.to_dataset()
    assert dict(ds.sizes) == {"sample": 0, "layer": 2, "direction": 1, "time": 50, "unit": 4}
    assert set(ds.data_vars) == {"h", "h_0", "h_n", "c_0", "c_n", "c", "input_gate",
                                 "forget_gate", "cell_gate", "output_gate"}
    path = seqacts.extract_to_netcdf(model, [x, x[:, :20]], tmp_path / "e.nc", internals=True,
                                     progress=False)
    with seqacts.open_dataset(path) as got:
        assert got.attrs["seqacts_stream_samples"] == 0
        assert got.attrs["seqacts_stream_batches"] == 2
        stream = {k for k in got.attrs if k.startswith("seqacts_stream")}
        xr.testing.assert_identical(got.load().drop_attrs(deep=False),
                                    ds.drop_attrs(deep=False))
        assert {k: v for k, v in got.attrs.items() if k not in stream | {"created"}} == {
            k: v for k, v in ds.attrs.items() if k != "created"}
