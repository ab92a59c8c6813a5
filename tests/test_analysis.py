"""Per-layer analyses against plain numpy loops over hand-built datasets."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from test_analysis_fixtures import SIGMOID, L, make_dataset

from seqacts.analysis.core import MissingVariableError, dead_units, layer, saturation, step_change
from seqacts.analysis.summary import summary, summary_table
from seqacts.errors import LayerSelectionError


def _valid_points(ds: xr.Dataset, var: str, li: int, d: int, u: int) -> np.ndarray:
    """Plain numpy: the recorded values of one unit over samples and valid steps."""
    vals = ds[var].values[:, li, d, :, u]
    return np.concatenate([vals[s, : ds["length"].values[s, li]] for s in range(len(vals))])


def test_layer_trims_padding_and_drops_other_kinds() -> None:
    ds = make_dataset(lengths=np.array([[3, 3, 2]] * 6))
    enc0 = layer(ds, "enc.l0")
    assert enc0.sizes == {"sample": 6, "direction": 2, "time": 3, "unit": 4}
    assert "reset_gate" not in enc0 and "forget_gate" in enc0
    dec = layer(ds, "dec")
    assert "direction" not in dec.dims and "c" not in dec and "c_n" not in dec
    assert dec.sizes["unit"] == 2 and dec.sizes["time"] == 2
    assert np.isfinite(dec["h"]).all() and np.isfinite(dec["update_gate"]).all()
    # proj_size: h is 3 wide, the cell 5; units cover the cell, h stays NaN past 3
    enc1 = layer(ds, "enc.l1")
    assert enc1.sizes["unit"] == 5
    assert np.isnan(enc1["h"].sel(unit=[3, 4])).all()
    assert np.isfinite(enc1["forget_gate"]).all()
    assert ds.seqacts.layer("dec").identical(dec)


def test_layer_unknown_name_lists_available() -> None:
    with pytest.raises(LayerSelectionError, match="available: enc.l0, enc.l1, dec"):
        layer(make_dataset(), "nope")


@pytest.mark.parametrize("low, high", [(0.1, 0.9), (0.3, 0.5)])
def test_saturation_matches_numpy(low: float, high: float) -> None:
    ds = make_dataset(n_samples=7, n_time=6, seed=3)
    sat = saturation(ds, low=low, high=high)
    assert set(sat["gate"].values) == set(SIGMOID)
    for li, name in enumerate(ds["layer"].values):
        for d in range(ds.sizes["direction"]):
            for u in range(ds.sizes["unit"]):
                for gate in sat["gate"].values:
                    got = sat.sel(gate=gate, layer=name).isel(direction=d, unit=u)
                    vals = _valid_points(ds, gate, li, d, u)
                    vals = vals[~np.isnan(vals)]
                    if vals.size == 0:
                        assert np.isnan(got["left"]) and int(got["count"]) == 0
                        continue
                    assert float(got["left"]) == pytest.approx(np.mean(vals < low))
                    assert float(got["right"]) == pytest.approx(np.mean(vals > high))
                    assert int(got["count"]) == vals.size


def test_saturation_ignores_values_hidden_in_padding() -> None:
    ds = make_dataset(lengths=np.array([[2, 2, 2]] * 6), n_time=4)
    dirty = ds.copy(deep=True)
    dirty["forget_gate"][:, :, :, 2:, :] = 0.0  # garbage past each length must not count
    xr.testing.assert_identical(saturation(ds), saturation(dirty))


def test_saturation_without_internals_says_what_to_do() -> None:
    with pytest.raises(MissingVariableError, match="internals=True"):
        saturation(make_dataset(internals=False))
    with pytest.raises(ValueError, match="low < high"):
        saturation(make_dataset(), low=0.9, high=0.1)


def test_dead_units_finds_constant_and_saturated_units() -> None:
    ds = make_dataset(seed=1)
    h = ds["h"].values
    lengths = ds["length"].values
    for s in range(ds.sizes["sample"]):
        n = lengths[s, 0]
        h[s, 0, 1, :n, 2] = 0.25  # enc.l0 backward unit 2: constant
        h[s, 2, 0, :n, 1] = np.where(np.arange(n) % 2, 1.0, -0.999)  # dec unit 1: saturated
    out = dead_units(ds)
    dead = {
        (str(ly), str(dr), int(u))
        for ly, dr, u in zip(
            *[
                out["dead"].stack(p=("layer", "direction", "unit"))[c].values
                for c in ("layer", "direction", "unit")
            ],
            strict=True,
        )
        if bool(out["dead"].sel(layer=ly, direction=dr, unit=u))
    }
    assert dead == {("enc.l0", "backward", 2), ("dec", "forward", 1)}
    assert bool(out["constant"].sel(layer="enc.l0", direction="backward", unit=2))
    assert bool(out["saturated"].sel(layer="dec", direction="forward", unit=1))
    expected_std = np.std(_valid_points(ds, "h", 1, 0, 0))
    assert float(out["std"].sel(layer="enc.l1", direction="forward", unit=0)) == pytest.approx(
        expected_std
    )
    assert not out["dead"].sel(layer="dec", direction="backward").any()  # padding is not dead


def test_dead_units_skips_saturation_for_unbounded_layers() -> None:
    ds = make_dataset((L("r.l0", "RNN_RELU", 3),), seed=2)
    ds["h"][:] = np.abs(ds["h"]) * 5 + 1.0  # ReLU units far above 1: active, not saturated
    assert not dead_units(ds)["dead"].any()


def test_step_change_matches_numpy_in_both_directions() -> None:
    ds = make_dataset(n_samples=5, n_time=6, seed=4)
    got = step_change(ds)
    assert got.dims == ("sample", "layer", "direction", "time")
    h, h0, lengths = ds["h"].values, ds["h_0"].values, ds["length"].values
    for s in range(5):
        for li in range(3):
            nd, w, n = int(ds.n_directions[li]), int(ds.n_units[li]), lengths[s, li]
            for d in range(2):
                for t in range(6):
                    value = float(got[s, li, d, t])
                    if d >= nd or t >= n:
                        assert np.isnan(value)
                        continue
                    if d == 0:
                        prev = h0[s, li, d, :w] if t == 0 else h[s, li, d, t - 1, :w]
                    else:
                        prev = h0[s, li, d, :w] if t == n - 1 else h[s, li, d, t + 1, :w]
                    assert value == pytest.approx(np.linalg.norm(h[s, li, d, t, :w] - prev))


def test_summary_matches_numpy() -> None:
    ds = make_dataset(n_samples=8, seed=5)
    table = summary(ds)
    assert list(table["width"].values) == [4, 3, 2]
    assert list(table["cell_width"].values) == [4, 5, 2]
    assert list(table["steps"].values) == list(ds["length"].sum("sample").values)
    for li, name in enumerate(ds["layer"].values):
        row = table.sel(layer=name)
        nd, w = int(ds.n_directions[li]), int(ds.n_units[li])
        hv = np.concatenate([_valid_points(ds, "h", li, d, u) for d in range(nd) for u in range(w)])
        assert float(row["h_mean"]) == pytest.approx(hv.mean())
        assert float(row["h_std"]) == pytest.approx(hv.std())
        gates = [g for g in SIGMOID if np.isfinite(ds[g][:, li]).any()]
        cw = int(ds.n_cell_units[li])
        gv = np.concatenate(
            [_valid_points(ds, g, li, d, u) for g in gates for d in range(nd) for u in range(cw)]
        )
        assert float(row["saturated"]) == pytest.approx(np.mean((gv < 0.1) | (gv > 0.9)))
    assert np.isnan(float(table.sel(layer="dec")["c_mean"]))
    text = summary_table(ds)
    assert "enc.l1" in text and "3 (cell 5)" in text and "8 samples" in text
    assert ds.seqacts.summary().identical(table)


def test_summary_without_internals_has_no_saturation() -> None:
    table = summary(make_dataset(internals=False))
    assert np.isnan(table["saturated"]).all() and np.isnan(table["c_mean"]).all()


def test_analyses_stay_lazy_on_dask_and_agree(tmp_path) -> None:
    ds = make_dataset(n_samples=9, n_time=7, seed=6)
    path = tmp_path / "acts.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path, chunks={"sample": 4}) as lazy:
        change = step_change(lazy)
        assert change.chunks is not None  # still a Dask graph
        xr.testing.assert_allclose(change.compute(), step_change(ds))
        xr.testing.assert_allclose(saturation(lazy), saturation(ds))
        xr.testing.assert_allclose(dead_units(lazy), dead_units(ds))
        xr.testing.assert_allclose(summary(lazy), summary(ds))
        assert layer(lazy, "enc.l0")["h"].chunks is not None
