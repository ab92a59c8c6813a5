"""Where each sample came from: the ``model_call`` coordinate and ``record()``'s labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import seqacts


class Wrapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(2, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def test_every_sample_carries_its_model_call_and_the_labels_in_force():
    torch.manual_seed(0)
    model = Wrapped()
    xs = [torch.randn(n, 4, 2) for n in (2, 3, 1, 1)]
    with seqacts.record(model, labels={"phase": "sanity"}) as rec:
        model(xs[0])
        with rec.label(phase="train", epoch=0) as same:
            assert same is rec and rec.labels == {"phase": "train", "epoch": 0}
            model(xs[1])
        assert rec.labels == {"phase": "sanity"}
        rec.label(phase="validation", epoch=1, rate=0.5)
        model(xs[2])
        rec.label(epoch=None, rate=None)
        model(xs[3])
    ds = rec.to_dataset()
    assert ds.model_call.dims == ("sample",)
    assert ds.model_call.values.tolist() == [0, 0, 1, 1, 1, 2, 3]
    assert ds.phase.values.tolist() == ["sanity"] * 2 + ["train"] * 3 + ["validation"] * 2
    assert ds.epoch.values.tolist() == [-1, -1, 0, 0, 0, 1, -1]
    np.testing.assert_array_equal(ds.rate.values, [np.nan] * 5 + [0.5, np.nan])
    for call, x in enumerate(xs):  # each call's rows are its batch, in order
        with torch.no_grad():
            out = model(x)
        got = ds.h.where(ds.model_call == call, drop=True).isel(layer=0, direction=0)
        np.testing.assert_array_equal(got.values, out.numpy())


def test_calls_outside_the_root_forward_keep_the_labels_they_ran_under():
    cell = nn.GRUCell(2, 3)
    model = nn.Sequential(cell)
    with torch.no_grad(), seqacts.record(model) as rec:
        cell(torch.randn(2, 2))  # outside any model(...): its own group
        rec.label(phase="b")
        cell(torch.randn(2, 2))
    ds = rec.to_dataset()
    assert ds.phase.values.tolist() == ["", "", "b", "b"]
    assert ds.model_call.values.tolist() == [0, 0, 1, 1]


def test_labels_are_checked():
    rec = seqacts.record(Wrapped())
    with pytest.raises(seqacts.OptionError, match="'length' is a name of the dataset's schema"):
        rec.label(length=3)
    with pytest.raises(seqacts.OptionError, match="'model_call' is a name"):
        seqacts.record(Wrapped(), labels={"model_call": 1})
    with pytest.raises(seqacts.ArgumentTypeError, match=r"label: phase=\[1\]: expected a str"):
        rec.label(phase=[1])
    model = Wrapped()
    with seqacts.record(model) as rec:
        rec.label(epoch=1)
        model(torch.randn(1, 2, 2))
        rec.label(epoch="two")
        model(torch.randn(1, 2, 2))
    with pytest.raises(seqacts.OptionError, match="'epoch' got values of types int, str"):
        rec.to_dataset()


def test_model_call_numbers_run_on_across_a_stream_file_and_its_resume(tmp_path):
    torch.manual_seed(1)
    model = Wrapped()
    batches = [torch.randn(2, 4, 2) for _ in range(3)]
    path = tmp_path / "s.nc"
    def interrupted():  # noqa: ANN202
        yield from batches[:2]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        seqacts.extract_to_netcdf(model, interrupted(), path, progress=False)
    seqacts.extract_to_netcdf(model, batches, path, resume=True, progress=False)
    ds = seqacts.open_dataset(path)
    assert ds.model_call.values.tolist() == [0, 0, 1, 1, 2, 2]
    expected = xr.concat([seqacts.extract(model, b) for b in batches], "sample")
    np.testing.assert_array_equal(ds.h.values, expected.h.values)
