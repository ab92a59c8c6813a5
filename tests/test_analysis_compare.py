"""Group contrasts, Mahalanobis scores and ROC AUC against plain numpy on hand-built datasets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import mahalanobis
from test_analysis_fixtures import L, make_dataset

from seqacts.analysis.compare import compare, distance, final_state, ledoit_wolf, roc_auc
from seqacts.analysis.core import MissingVariableError


def _cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    n1, n0 = len(a), len(b)
    pooled = np.sqrt(((n1 - 1) * a.var(ddof=1) + (n0 - 1) * b.var(ddof=1)) / (n1 + n0 - 2))
    return (a.mean() - b.mean()) / pooled


def _mean_over_valid_time(ds: xr.Dataset, s: int, li: int, d: int, u: int) -> float:
    return float(np.mean(ds["h"].values[s, li, d, : ds["length"].values[s, li], u]))


def test_final_state_follows_direction_and_length() -> None:
    ds = make_dataset(n_samples=5, seed=7)
    xr.testing.assert_allclose(final_state(ds), ds["h_n"].where(ds["h_n"].notnull()))


def test_compare_matches_numpy_cohens_d() -> None:
    ds = make_dataset(n_samples=10, seed=8)
    flags = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 0], dtype=bool)
    ds = ds.assign_coords(is_anomaly=("sample", flags))
    res = ds.seqacts.compare("is_anomaly")
    assert res.attrs["group"] == "is_anomaly" and res.attrs["baseline"] == "False"
    assert res.attrs["n_True"] == 4 and res.attrs["n_False"] == 6
    # every valid (layer, direction, unit) once: 2*4 + 3 + 2, padding dropped
    assert res.sizes["rank"] == 13
    assert list(res["rank"].values) == list(range(1, 14))
    assert np.all(np.diff(np.abs(res["d"].values)) <= 0)
    for r in range(res.sizes["rank"]):
        row = res.isel(rank=r)
        li = list(ds["layer"].values).index(str(row["layer"].values))
        d = list(ds["direction"].values).index(str(row["direction"].values))
        u = int(row["unit"])
        feat = np.array([_mean_over_valid_time(ds, s, li, d, u) for s in range(10)])
        assert float(row["d"]) == pytest.approx(_cohens_d(feat[flags], feat[~flags]))


def test_compare_final_states_and_categorical_groups() -> None:
    ds = make_dataset(n_samples=12, seed=9)
    kinds = np.array(["none"] * 6 + ["spike"] * 3 + ["frozen"] * 3)
    res = compare(ds, xr.DataArray(kinds, dims="sample", name="kind_of_anomaly"), feature="h_n")
    assert res.attrs["baseline"] == "none"  # the most frequent label
    assert set(res["level"].values) == {"spike", "frozen"}
    row = res.isel(rank=0)
    li = list(ds["layer"].values).index(str(row["layer"].values))
    d = list(ds["direction"].values).index(str(row["direction"].values))
    feat = ds["h_n"].values[:, li, d, int(row["unit"])]
    level = str(row["level"].values)
    assert float(row["d"]) == pytest.approx(_cohens_d(feat[kinds == level], feat[kinds == "none"]))


def test_compare_errors_name_the_problem() -> None:
    ds = make_dataset()
    with pytest.raises(MissingVariableError, match="assign_coords"):
        compare(ds, "is_anomaly")
    with pytest.raises(ValueError, match="single value"):
        compare(ds, np.zeros(6, dtype=bool))
    with pytest.raises(ValueError, match=">= 2 samples"):
        compare(ds, np.array([1, 0, 0, 0, 0, 0], dtype=bool))
    with pytest.raises(ValueError, match="feature: expected one of mean"):
        compare(ds, np.array([1, 1, 0, 0, 0, 0], dtype=bool), feature="median")


def _loop_ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit & Wolf (2004), Lemma 3.2-3.4, written out sample by sample."""
    n, p = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    mu = np.trace(s) / p
    d2 = np.linalg.norm(s - mu * np.eye(p), "fro") ** 2 / p
    b2 = sum(np.linalg.norm(np.outer(r, r) - s, "fro") ** 2 / p for r in xc) / n**2
    b2 = min(b2, d2)
    return b2 / d2 * mu * np.eye(p) + (d2 - b2) / d2 * s


def test_ledoit_wolf_matches_the_paper_formula() -> None:
    x = np.random.default_rng(0).normal(size=(7, 12))  # fewer samples than features
    cov, shrink = ledoit_wolf(x)
    np.testing.assert_allclose(cov, _loop_ledoit_wolf(x), rtol=1e-10)
    assert 0 < shrink <= 1 and np.linalg.eigvalsh(cov).min() > 0


def test_distance_without_shrinkage_is_plain_mahalanobis() -> None:
    ds = make_dataset((L("l0", "GRU", 3, None, 2),), n_samples=40, seed=10)
    ref = np.arange(40) < 30
    got = distance(ds, ref, shrinkage=0.0, folds=0).sel(layer="l0").values
    x = ds["h_n"].values[:, 0].reshape(40, -1)
    inv = np.linalg.inv(np.cov(x[ref].T, bias=True))
    expected = [mahalanobis(row, x[ref].mean(0), inv) for row in x]
    np.testing.assert_allclose(got, expected, rtol=1e-8)


def test_distance_cross_fits_reference_samples() -> None:
    ds = make_dataset((L("l0", "LSTM", 4),), n_samples=20, seed=11)
    ref = np.arange(20) < 15
    got = distance(ds, ref, folds=5).values[:, 0]
    x = ds["h_n"].values[:, 0, 0]
    idx = np.flatnonzero(ref)
    for k in range(5):
        test = idx[np.arange(15) % 5 == k]
        train = x[np.setdiff1d(idx, test)]
        cov, _ = ledoit_wolf(train)
        inv = np.linalg.inv(cov)
        for i in test:
            assert got[i] == pytest.approx(mahalanobis(x[i], train.mean(0), inv), rel=1e-6)
    full_inv = np.linalg.inv(ledoit_wolf(x[ref])[0])
    assert got[17] == pytest.approx(mahalanobis(x[17], x[ref].mean(0), full_inv), rel=1e-6)


def test_distance_separates_planted_anomalies_with_few_samples() -> None:
    layers = (L("enc.l0", "LSTM", 6, None, 2), L("enc.l1", "LSTM", 6), L("dec", "GRUCell", 5))
    normal = make_dataset(layers, n_samples=8, seed=12)  # 8 samples < 12 state values
    test = make_dataset(layers, n_samples=10, seed=13)
    shift = xr.DataArray(np.r_[np.zeros(5), np.full(5, 3.0)], dims="sample")
    test["h_n"] = test["h_n"] + shift
    scores = test.seqacts.distance(normal)
    assert scores.dims == ("sample", "layer") and np.isfinite(scores).all()
    assert (scores["shrinkage"] > 0).all()
    auc = roc_auc(scores, np.arange(10) >= 5)
    assert auc.dims == ("layer",) and (auc == 1.0).all()


def test_distance_uses_final_state_of_per_step_variables() -> None:
    ds = make_dataset(n_samples=12, seed=14)
    a = distance(ds, np.arange(12) < 8, var="h")
    b = distance(ds, np.arange(12) < 8, var="h_n")
    np.testing.assert_allclose(a.values, b.values)
    with pytest.raises(TypeError, match="boolean mask"):
        distance(ds, np.arange(12))


def test_roc_auc_counts_ties_half() -> None:
    score = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9])
    labels = np.array([0, 0, 1, 1, 1, 0], dtype=bool)
    pairs = [
        1.0 if p > n else 0.5 if p == n else 0.0
        for p, n in itertools.product(score[labels], score[~labels])
    ]
    got = roc_auc(xr.DataArray(score, dims="sample"), labels)
    assert float(got) == pytest.approx(np.mean(pairs))


def test_compare_and_distance_on_dask(tmp_path) -> None:
    ds = make_dataset(n_samples=12, seed=15)
    ds = ds.assign_coords(is_anomaly=("sample", np.arange(12) % 3 == 0))
    ds.to_netcdf(tmp_path / "a.nc")
    with xr.open_dataset(tmp_path / "a.nc", chunks={"sample": 5}) as lazy:
        xr.testing.assert_allclose(compare(lazy, "is_anomaly"), compare(ds, "is_anomaly"))
        xr.testing.assert_allclose(
            distance(lazy, ~lazy["is_anomaly"]), distance(ds, ~ds["is_anomaly"])
        )
