"""Per-step Mahalanobis distance against brute force, out-of-fold scoring and lazy data."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import mahalanobis
from test_analysis_fixtures import L, make_dataset

from seqacts.analysis.compare import compare
from seqacts.analysis.core import MissingVariableError
from seqacts.analysis.mahalanobis import Moments, ledoit_wolf
from seqacts.analysis.step_distance import step_distance
from seqacts.errors import GroupError, ReferenceMaskError, ReferenceSetError

LAYERS = (L("enc.l0", "LSTM", 3, None, 2), L("dec", "GRU", 4, None, 1))


def _rows(ds: xr.Dataset, layer: str, samples: np.ndarray) -> np.ndarray:
    """Valid steps x (direction, unit) of the given samples, written out by position."""
    li = list(ds["layer"].values).index(layer)
    nd, nu = int(ds["n_directions"][li]), int(ds["n_units"][li])
    out = []
    for s in samples:
        n = int(ds["length"].values[s, li])
        h = ds["h"].values[s, li, :nd, :n, :nu]  # direction, time, unit
        out.append(h.transpose(1, 0, 2).reshape(n, nd * nu))
    return np.concatenate(out)


def _brute(ds: xr.Dataset, layer: str, train: np.ndarray, s: int) -> np.ndarray:
    inv = np.linalg.inv(ledoit_wolf(_rows(ds, layer, train))[0])
    mean = _rows(ds, layer, train).mean(0)
    return np.array([mahalanobis(r, mean, inv) for r in _rows(ds, layer, np.array([s]))])


def test_moments_give_the_ledoit_wolf_of_the_rows() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.0, (40, 7)) @ rng.normal(size=(7, 7))
    parts = Moments.from_rows(x[:15]) + Moments.from_rows(x[15:])
    cov, shrink = ledoit_wolf(x)
    got, got_shrink = parts.covariance(None)
    np.testing.assert_allclose(got, cov, rtol=1e-9, atol=1e-12)
    assert got_shrink == pytest.approx(shrink, rel=1e-9)
    back = parts - Moments.from_rows(x[15:])
    np.testing.assert_allclose(back.covariance(None)[0], ledoit_wolf(x[:15])[0], atol=1e-10)


def test_step_distance_matches_brute_force_in_sample_and_out_of_fold() -> None:
    ds = make_dataset(LAYERS, n_samples=14, n_time=7, seed=3)
    ref = np.arange(14) < 10
    ref_idx = np.flatnonzero(ref)
    lengths = ds["length"].values[:, 0]
    got = step_distance(ds, ref, folds=0)
    assert got.dims == ("sample", "layer", "time") and got.name == "step_distance"
    oof = ds.seqacts.step_distance(ref, folds=5)
    fold = np.arange(ref_idx.size) % 5
    for layer in ("enc.l0", "dec"):
        for s in range(14):
            n = lengths[s]
            expected = _brute(ds, layer, ref_idx, s)
            np.testing.assert_allclose(got.sel(layer=layer).values[s, :n], expected, rtol=1e-8)
            assert np.isnan(got.sel(layer=layer).values[s, n:]).all()  # past the length
            if ref[s]:  # scored by the fit on the other folds only
                k = fold[list(ref_idx).index(s)]
                expected = _brute(ds, layer, ref_idx[fold != k], s)
            np.testing.assert_allclose(oof.sel(layer=layer).values[s, :n], expected, rtol=1e-8)


def test_a_reference_dataset_equals_the_masked_in_sample_fit() -> None:
    ds = make_dataset(LAYERS, n_samples=12, n_time=6, seed=4)
    ref = np.arange(12) % 3 != 0
    by_mask = step_distance(ds, ref, folds=1)
    by_dataset = step_distance(ds, ds.isel(sample=np.flatnonzero(ref)))
    xr.testing.assert_allclose(by_mask, by_dataset)
    assert (by_mask["shrinkage"] >= 0).all() and (by_mask["shrinkage"] <= 1).all()


def test_out_of_fold_reference_scores_are_not_biased_low() -> None:
    # every sample is drawn from one distribution: a fair score treats reference samples
    # like the held-out ones, an in-sample fit scores them lower (it has seen them)
    rng = np.random.default_rng(5)
    n, t, u = 60, 4, 32
    ds = make_dataset((L("l0", "RNN_TANH", u),), n_samples=n, n_time=t,
                      lengths=np.full((n, 1), t), internals=False, seed=5)  # fmt: skip
    ds["h"][:] = rng.normal(size=ds["h"].shape)
    ref = np.arange(n) < 30
    inside = step_distance(ds, ref, folds=0, shrinkage=0.0).max("time").sel(layer="l0").values
    oof = step_distance(ds, ref, folds=10, shrinkage=0.0).max("time").sel(layer="l0").values
    held_out = inside[~ref].mean()  # the same fit for both variants
    assert inside[ref].mean() < 0.85 * held_out
    assert abs(oof[ref].mean() - held_out) < 0.05 * held_out


def _departing(n: int = 40, t: int = 20, seed: int = 6) -> xr.Dataset:
    """Noise states; in the anomalous half, unit 2 of 'l0' jumps by +3 at steps 10-12."""
    rng = np.random.default_rng(seed)
    ds = make_dataset((L("l0", "LSTM", 5),), n_samples=n, n_time=t,
                      lengths=np.full((n, 1), t), internals=False, seed=seed)  # fmt: skip
    h = rng.normal(0, 0.3, ds["h"].shape)
    anomalous = np.arange(n) >= n // 2
    mask = np.zeros((n, t), dtype=bool)
    mask[anomalous, 10:13] = True
    h[anomalous, 0, 0, 10:13, 2] += 3.0
    ds["h"][:] = h
    kinds = np.where(anomalous, np.where(np.arange(n) % 2 == 0, "jump", "jump2"), "normal")
    ds = ds.assign_coords(is_anomaly=("sample", anomalous), kind=("sample", kinds))
    ds["anomaly_mask"] = (("sample", "time"), mask)
    return ds


def test_a_unit_that_departs_at_known_steps_is_found_there() -> None:
    ds = _departing()
    dist = ds.seqacts.step_distance(~ds.is_anomaly).sel(layer="l0")
    when = dist.argmax("time").values
    anomalous = ds["is_anomaly"].values
    assert set(when[anomalous]) <= {10, 11, 12}
    assert dist.max("time")[anomalous].min() > dist.max("time")[~anomalous].max()
    local = ds.seqacts.compare("is_anomaly", where="anomaly_mask")
    top = local.isel(rank=0)
    assert int(top["unit"]) == 2 and str(top["magnitude"].values) == "large"
    assert float(top["d"]) > 4
    assert local.attrs["where"] == "anomaly_mask"
    # the whole-window mean dilutes the same departure
    whole = ds.seqacts.compare("is_anomaly")
    assert float(whole.isel(rank=0)["d"]) < float(top["d"])


def test_localized_compare_per_category_reads_baseline_at_the_same_steps() -> None:
    ds = _departing()
    res = compare(ds, "kind", where=ds["anomaly_mask"])
    assert res.attrs["baseline"] == "normal"
    assert set(res["level"].values) == {"jump", "jump2"}
    for level in ("jump", "jump2"):
        row = res.where(res["level"] == level, drop=True).isel(rank=0)
        assert int(row["unit"]) == 2
        members = ds["kind"].values == level
        h = ds["h"].values[:, 0, 0, :, 2]
        own = h[members][:, 10:13].mean(1)
        base = h[ds["kind"].values == "normal"][:, 10:13].mean(1)
        pooled = np.sqrt((own.var(ddof=1) * (own.size - 1) + base.var(ddof=1) * (base.size - 1))
                         / (own.size + base.size - 2))  # fmt: skip
        assert float(row["d"]) == pytest.approx((own.mean() - base.mean()) / pooled)


def test_step_distance_is_lazy_on_dask_and_equals_the_eager_result(tmp_path) -> None:
    ds = make_dataset(LAYERS, n_samples=12, n_time=6, seed=8)
    ds = ds.assign_coords(is_anomaly=("sample", np.arange(12) >= 9))
    ds.to_netcdf(tmp_path / "a.nc")
    eager = step_distance(ds, ~ds["is_anomaly"])
    with xr.open_dataset(tmp_path / "a.nc", chunks={"sample": 5}) as lazy:
        got = lazy.seqacts.step_distance(~lazy["is_anomaly"])
        assert got.chunks is not None  # nothing computed yet but the reference's sums
        xr.testing.assert_allclose(got.compute(), eager)


def test_step_distance_errors_name_the_fix() -> None:
    ds = make_dataset(LAYERS, n_samples=6, seed=9)
    with pytest.raises(ReferenceMaskError, match="reference=~ds.is_anomaly"):
        step_distance(ds, np.arange(6))
    with pytest.raises(ReferenceSetError, match="selects no sample"):
        step_distance(ds, np.zeros(6, dtype=bool))
    with pytest.raises(MissingVariableError, match="no time dimension"):
        step_distance(ds, np.ones(6, dtype=bool), var="h_n")
    with pytest.raises(GroupError, match="where: expected a boolean"):
        compare(ds, np.arange(6) < 3, where=np.zeros((6, 2)))


def test_deviation_finds_a_unit_that_departs_with_either_sign() -> None:
    ds = _departing(n=60)
    h = ds["h"].values
    flip = (np.arange(60) % 4 < 2) & ds["is_anomaly"].values  # half the departures go down
    h[flip, 0, 0, 10:13, 2] -= 6.0
    ds["h"][:] = h
    signed = compare(ds, "is_anomaly", where="anomaly_mask")
    dev = compare(ds, "is_anomaly", where="anomaly_mask", feature="deviation")
    assert int(dev.isel(rank=0)["unit"]) == 2 and str(dev.isel(rank=0)["magnitude"].values) == "large"
    assert abs(float(signed.sel(rank=signed["unit"] == 2)["d"][0])) < 0.8
    with pytest.raises(GroupError, match="feature='mean' or 'deviation'"):
        compare(ds, "is_anomaly", where="anomaly_mask", feature="h_n")


@pytest.mark.parametrize("name", ["step_distance", "compare", "distance", "saturation", "layer"])
def test_accessor_methods_carry_the_functions_signature_and_docstring(name: str) -> None:
    import inspect

    import seqacts

    funcs = {"step_distance": seqacts.analysis.step_distance.step_distance, "compare": compare,
             "distance": seqacts.analysis.compare.distance,
             "saturation": seqacts.analysis.core.saturation,
             "layer": seqacts.analysis.core.layer}  # fmt: skip
    method = getattr(make_dataset().seqacts, name)
    assert method.__doc__ == funcs[name].__doc__
    params = list(inspect.signature(funcs[name]).parameters.values())[1:]
    assert list(inspect.signature(method).parameters.values()) == params


def test_effect_sizes_in_words_follow_cohens_thresholds() -> None:
    from seqacts.analysis.effect_size import magnitude

    d = np.array([0.0, -0.19, 0.2, -0.49, 0.5, 0.79, -0.8, 3.0, np.nan])
    assert list(magnitude(d)) == ["negligible", "negligible", "small", "small", "medium",
                                  "medium", "large", "large", ""]  # fmt: skip
    assert magnitude(-0.6) == "medium"
