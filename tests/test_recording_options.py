"""Options declared once: every entry point takes them from the options classes, and
``edits=`` works in each (record, extract, extract_to_netcdf; extract_distributed in
``test_scale.py``), checked against an independent float64 reference of the edited run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import seqacts
from seqacts.errors import ArgumentTypeError, EditError, LayerSelectionError
from seqacts.io.stream import StreamMismatchError
from tests.reference import reference_stack


@pytest.fixture
def gru() -> nn.Module:
    torch.manual_seed(0)
    return nn.GRU(3, 5, num_layers=2, batch_first=True).eval()


def _x(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 7, 3, generator=torch.Generator().manual_seed(seed))


EDIT = dict(layer="l0", units=[1, 3], value=0.25, time=slice(2, 5))


def _expected_h(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """h of every layer in float64, units 1 and 3 of l0 set to 0.25 after steps 2..4."""
    def edit(layer: int, direction: int, sample: int, t: int) -> list:
        return [("h", [1, 3], 0.25)] if layer == 0 and 2 <= t < 5 else []

    layers = reference_stack(model, x.numpy(), edit=edit)
    return np.stack([out["h"] for out in layers], axis=1)  # sample, layer, direction, time, unit


def test_extract_and_record_apply_edits(gru: nn.Module) -> None:
    x = _x()
    edit = seqacts.ablate(**EDIT)
    ds = seqacts.extract(gru, x, edits=[edit])
    np.testing.assert_allclose(ds["h"].values, _expected_h(gru, x), rtol=0, atol=2e-6)
    assert not np.allclose(ds["h"].values, seqacts.extract(gru, x)["h"].values)
    with seqacts.record(gru, edits=edit) as rec:
        out, _ = gru(x)
    xr.testing.assert_identical(rec.to_dataset().drop_attrs(), ds.drop_attrs())
    with seqacts.intervene(gru, [edit]):  # the same edited run, returned by the model too
        edited, _ = gru(x)
    torch.testing.assert_close(out, edited, rtol=0, atol=0)
    assert gru(x)[0].ne(out).any()  # after the block the model runs unedited


def test_stream_applies_edits_and_resume_checks_them(gru: nn.Module, tmp_path: Path) -> None:
    x = _x(10)
    edit = seqacts.ablate(**EDIT)
    path = seqacts.extract_to_netcdf(gru, x.split(4), tmp_path / "e.nc", edits=[edit],
                                     progress=False)
    # each batch equals extract() of it with the same edits, bit for bit (a whole-data run
    # can differ by an ulp: the kernel's matrix products block by batch size)
    expected = xr.concat([seqacts.extract(gru, b, edits=[edit]) for b in x.split(4)], "sample")
    with xr.open_dataset(path) as got:
        np.testing.assert_array_equal(got["h"].values, expected["h"].values)
        np.testing.assert_array_equal(got["h_n"].values, expected["h_n"].values)
        np.testing.assert_allclose(got["h"].values, _expected_h(gru, x), rtol=0, atol=2e-6)
    with pytest.raises(StreamMismatchError, match="edits"):  # other edits: not the same file
        seqacts.extract_to_netcdf(gru, x.split(4), path, resume=True, progress=False,
                                  edits=[seqacts.ablate("l0", [1], value=0.5)])
    with pytest.raises(StreamMismatchError, match="edits"):  # no edits: not the same file
        seqacts.extract_to_netcdf(gru, x.split(4), path, resume=True, progress=False)
    again = seqacts.extract_to_netcdf(gru, x.split(4), path, resume=True, progress=False,
                                      edits=[seqacts.ablate(**EDIT)])  # equal edits: complete
    assert again == path


def test_bad_edits_are_refused_before_any_forward(gru: nn.Module, tmp_path: Path) -> None:
    calls = []
    gru.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(EditError, match=r"expected seqacts.ablate\(...\) or seqacts.patch"):
        seqacts.extract(gru, _x(), edits=["l0"])
    with pytest.raises(LayerSelectionError, match="no layer .l7."):
        seqacts.record(gru, edits=seqacts.ablate("l7", 0))
    with pytest.raises(LayerSelectionError, match="no layer .l7."):
        seqacts.extract_to_netcdf(gru, [_x()], tmp_path / "x.nc", progress=False,
                                  edits=seqacts.ablate("l7", 0))
    assert calls == [] and not (tmp_path / "x.nc").exists()


def test_unknown_options_name_the_function_and_the_valid_ones(gru: nn.Module,
                                                              tmp_path: Path) -> None:
    from seqacts.options import RecordingOptions, option_names

    valid = ", ".join(sorted(option_names(RecordingOptions)))  # every one, named
    assert "edits" in valid and "layers" in valid
    with pytest.raises(ArgumentTypeError, match=f"record: unknown option 'layer'; options are "
                                                f"{valid}$"):
        seqacts.record(gru, layer="l0")
    with pytest.raises(ArgumentTypeError, match="extract_to_netcdf: unknown option 'edit'"):
        seqacts.extract_to_netcdf(gru, [_x()], tmp_path / "y.nc", edit=[], progress=False)
    with pytest.raises(ArgumentTypeError, match="write_stream: unknown option 'layers'"):
        seqacts.write_stream([], tmp_path / "z.nc", layers="l0")
    assert not list(tmp_path.iterdir())


def test_stream_records_python_cells_as_extract_does(tmp_path: Path) -> None:
    from tests.test_cells import N_IN, H, LayerNormLSTMCell, Loop, T

    torch.manual_seed(0)
    model = Loop(LayerNormLSTMCell(N_IN, H)).eval()
    x = torch.randn(6, T, N_IN)
    path = seqacts.extract_to_netcdf(model, x.split(3), tmp_path / "cells.nc", progress=False,
                                     cells={"cell": "h,c"}, internals=True)
    expected = xr.concat([seqacts.extract(model, b, cells={"cell": "h,c"}, internals=True)
                          for b in x.split(3)], "sample")
    with seqacts.open_dataset(path) as got:
        assert list(got["kind"].values) == ["cell(h,c)"]
        for name in ("h", "c", "h_n", "c_n"):
            np.testing.assert_array_equal(got[name].values, expected[name].values)
