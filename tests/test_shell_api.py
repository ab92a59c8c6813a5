"""The API side of issue 24's traps: NumPy input, a reference mask that is the anomaly label,
weights saved from a wrapper, and the confidence interval the report ranks units with."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import seqacts
from seqacts.analysis.effect_size import d_interval
from seqacts.errors import ArgumentTypeError, ReferenceWarning
from seqacts.loading import load_weights


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.GRU(3, 4, batch_first=True).eval()


def test_numpy_input_is_converted_as_the_command_line_does() -> None:
    model = _model()
    x = np.random.default_rng(0).normal(size=(5, 6, 3))
    from_numpy = seqacts.extract(model, x)  # float64: converted to the parameters' float32
    from_tensor = seqacts.extract(model, torch.from_numpy(x.astype(np.float32)))
    np.testing.assert_array_equal(from_numpy["h"].values, from_tensor["h"].values)
    with torch.no_grad():
        expected, _ = model(torch.from_numpy(x).float())
    np.testing.assert_array_equal(from_numpy["h"].isel(layer=0, direction=0).values,
                                  expected.numpy())  # fmt: skip
    with pytest.raises(ArgumentTypeError, match="astype"):
        seqacts.extract(model, np.array([[["a"]]], dtype=object))


def test_a_reference_mask_that_is_the_anomalies_warns() -> None:
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(12, 5, 3)).astype(np.float32))
    ds = seqacts.extract(_model(), x)
    ds = ds.assign_coords(is_anomaly=("sample", np.arange(12) < 3))
    with pytest.warns(ReferenceWarning, match=r"reference=~ds\.is_anomaly"):
        seqacts.step_distance(ds, "is_anomaly")
    with pytest.warns(ReferenceWarning):
        seqacts.distance(ds, ds["is_anomaly"])
    mostly = ds.assign_coords(is_anomaly=("sample", np.arange(12) >= 3))  # normal: minority
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReferenceWarning)
        seqacts.step_distance(ds, ~ds["is_anomaly"])
        seqacts.step_distance(mostly, ~mostly["is_anomaly"])  # a minority, but the normals
        seqacts.distance(ds, xr.DataArray(np.arange(12) < 3, dims="sample"))  # unnamed mask


def test_weights_from_data_parallel_are_stripped_and_said() -> None:
    source, target = _model(), torch.nn.GRU(3, 4, batch_first=True)
    said: list[str] = []
    load_weights(target, torch.nn.DataParallel(source).state_dict(), "dp.pt", said.append)
    assert len(said) == 1 and "'module.'" in said[0]
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value)


def test_d_interval_matches_the_normal_approximation() -> None:
    d, n1, n0 = 0.5, 20, 20
    se = np.sqrt(np.float64(n1 + n0) / (n1 * n0) + d * d / (2.0 * (n1 + n0)))
    lo, hi = d_interval(d, n1, n0)
    assert lo == pytest.approx(d - 1.959964 * se, abs=1e-4)
    assert hi == pytest.approx(d + 1.959964 * se, abs=1e-4)
    assert np.isnan(d_interval(1.0, 0, 5)[0])
