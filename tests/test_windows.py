"""seqacts.match and seqacts.top_windows against brute-force searches written from their rules."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import seqacts
from seqacts.analysis import blocks
from seqacts.analysis.percentile import column_percentile


def recording(
    seed: int,
    n: int = 7,
    steps: int = 12,
    units: int = 5,
    *,
    bidirectional: bool = False,
    dtype: type = np.float32,
    ties: bool = False,
) -> xr.Dataset:
    """A seqacts-shaped dataset: 2 layers (the second narrower), NaN-padded lengths."""
    rng = np.random.default_rng(seed)
    dirs = ["forward", "backward"] if bidirectional else ["forward"]
    h = rng.standard_normal((n, 2, len(dirs), steps, units)).astype(dtype)
    if ties:
        h = np.round(h, 0)
    lengths = rng.integers(1, steps + 1, size=(n, 1)).repeat(2, axis=1)
    lengths[0] = steps
    pad = np.arange(steps)[None, None, None, :, None] >= lengths[:, :, None, None, None]
    h[np.broadcast_to(pad, h.shape)] = np.nan
    h[:, 1, :, :, units - 1] = np.nan  # layer 1 is one unit narrower
    nonfinite = np.zeros((n, 2), dtype=np.int64)
    if n > 3:
        nonfinite[3] = 1
        h[3, :, 0, 0, 0] = np.inf
    return xr.Dataset(
        {"h": (("sample", "layer", "direction", "time", "unit"), h)},
        coords={
            "sample": np.arange(100, 100 + n),
            "layer": ["l0", "l1"],
            "direction": dirs,
            "n_units": ("layer", [units, units - 1]),
            "n_directions": ("layer", [len(dirs)] * 2),
            "length": (("sample", "layer"), lengths),
            "nonfinite": (("sample", "layer"), nonfinite),
            "group": ("sample", np.array(["a", "b"] * n)[:n]),
        },
    )


def valid_states(ds: xr.Dataset, layer: int, direction: int = 0) -> list[np.ndarray]:
    """Each sample's valid (time, unit) block; an empty one for a left-out sample."""
    width = int(ds["n_units"][layer])
    out = []
    for s in range(ds.sizes["sample"]):
        n = int(ds["length"][s, layer]) if int(ds["nonfinite"][s, layer]) == 0 else 0
        out.append(ds["h"].values[s, layer, direction, :n, :width].astype(np.float64))
    return out


def brute_match(blocks, thr, selected, width, query):
    rows = []
    for s, x in enumerate(blocks):
        for a in range(0, len(x) - width + 1):
            if (s, a) == query:
                continue
            on = (x[a : a + width] > thr).all(axis=0)
            shared = int((on & selected).sum())
            if shared:
                rows.append((-shared / int((on | selected).sum()), s, a))
    return sorted(rows)


def brute_top(blocks, unit, width):
    windows_ = sorted(
        (-float(np.mean(x[a : a + width, unit])), s, a)
        for s, x in enumerate(blocks) for a in range(0, len(x) - width + 1)
    )  # fmt: skip
    taken: list[tuple[int, int]] = []
    for _, s, a in windows_:
        if all(s != t or abs(a - b) >= width for t, b in taken):
            taken.append((s, a))
    return taken


def check_match(ds: xr.Dataset, layer: int, sample: int, a: int, b: int, top: int, **kw) -> None:
    blocks = valid_states(ds, layer, 1 if kw.get("direction") == "backward" else 0)
    allv = np.concatenate(blocks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        thr = np.nanpercentile(allv, 80, axis=0) if "threshold" not in kw else kw["threshold"]
    thr = np.broadcast_to(np.asarray(thr, np.float64), (allv.shape[1],))
    query = blocks[sample][a:b]
    selected = (query > thr).all(axis=0)
    if kw.get("units") is not None:
        selected = np.isin(np.arange(allv.shape[1]), kw["units"])
    label = int(ds["sample"][sample])
    layer_name = str(ds["layer"].values[layer])
    if not selected.any():
        with pytest.raises(seqacts.OptionError, match="no unit"):
            seqacts.match(ds, label, layer_name, slice(a, b), top=top, **kw)
        return
    got = seqacts.match(ds, label, layer_name, slice(a, b), top=top, **kw)
    expected = brute_match(blocks, thr, selected, b - a, (sample, a))[:top]
    assert list(got["sample"].values) == [int(ds["sample"][s]) for _, s, _ in expected]
    assert list(got["start"].values) == [st for _, _, st in expected]
    np.testing.assert_array_equal(got["score"].values, [-sc for sc, _, _ in expected])
    np.testing.assert_array_equal(got["stop"] - got["start"], b - a)
    np.testing.assert_array_equal(got["selected"], selected)
    if "threshold" not in kw:
        np.testing.assert_array_equal(got["threshold"], thr)  # bit for bit numpy's percentile
    for r, (_, s, st_) in enumerate(expected):
        np.testing.assert_array_equal(got["on"][r], (blocks[s][st_ : st_ + b - a] > thr).all(0))
        assert got["group"].values[r] == ds["group"].values[s]


@pytest.mark.parametrize("seed", range(4))
def test_match_is_the_brute_force_search(seed: int) -> None:
    ds = recording(seed, ties=seed == 3)
    for layer in (0, 1):
        check_match(ds, layer, 0, 2, 5, top=50)
        check_match(ds, layer, 1, 0, 1, top=3)


def test_match_with_given_units_threshold_and_backward_direction() -> None:
    ds = recording(5, bidirectional=True)
    check_match(ds, 0, 0, 3, 6, top=10, units=[0, 2])
    check_match(ds, 0, 0, 3, 6, top=10, threshold=0.0)
    check_match(ds, 1, 0, 1, 3, top=10, threshold=[0.1, -0.2, 0.0, 0.3])
    check_match(ds, 0, 0, 1, 3, top=10, direction="backward", threshold=-0.5)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16), n=st.integers(1, 6), steps=st.integers(1, 10),
    units=st.integers(2, 6), width=st.integers(1, 5), top=st.integers(1, 30),
    ties=st.booleans(), f64=st.booleans(),
)  # fmt: skip
def test_match_and_top_windows_on_random_recordings(seed, n, steps, units, width, top, ties, f64):
    ds = recording(seed, n, steps, units, ties=ties, dtype=np.float64 if f64 else np.float32)
    width = min(width, steps)
    b = width
    check_match(ds, 0, 0, 0, b, top=top, **({"threshold": 0.0} if ties else {}))
    blocks = valid_states(ds, 0)
    for unit in (0, units - 1):
        check_top(ds, blocks, 0, unit, width, top)


def check_top(ds: xr.Dataset, blocks, layer: int, unit: int, width: int, top: int, **kw) -> None:
    got = seqacts.top_windows(ds, str(ds["layer"].values[layer]), unit, width=width, top=top, **kw)
    expected = brute_top(blocks, unit, width)[:top]
    assert list(zip(got["sample"].values, got["start"].values, strict=True)) == [
        (int(ds["sample"][s]), a) for s, a in expected]  # fmt: skip
    for r, (s, a) in enumerate(expected):
        np.testing.assert_allclose(got["score"][r], np.mean(blocks[s][a : a + width, unit]),
                                   rtol=1e-12)  # fmt: skip
        np.testing.assert_array_equal(got["values"][r], blocks[s][a : a + width, unit])


@pytest.mark.parametrize("seed", range(3))
def test_top_windows_is_the_brute_force_search(seed: int) -> None:
    ds = recording(seed, n=9, steps=20)
    for layer, unit in ((0, 0), (0, 4), (1, 3)):
        for width in (1, 4, 20):
            check_top(ds, valid_states(ds, layer), layer, unit, width, top=7)
    assert seqacts.top_windows(ds, "l0", 0, width=21).sizes["rank"] == 0


def test_top_windows_of_another_variable_and_direction() -> None:
    ds = recording(4, bidirectional=True)
    ds = ds.assign(c=-ds["h"])
    blocks = [-b for b in valid_states(ds, 0, 1)]
    check_top(ds, blocks, 0, 2, 3, 5, var="c", direction="backward")


def test_percentile_is_numpys_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for trial in range(40):
            x = rng.standard_normal((int(rng.integers(1, 200)), 4)).astype(dtype)
            x[rng.random(x.shape) < 0.3] = np.nan
            if trial % 3 == 0:
                x = np.round(x, 1)
            x[:, 0] = -0.0 if trial % 2 else np.nan
            q = [80.0, 0.0, 100.0, 37.3][trial % 4]
            parts = np.array_split(x, int(rng.integers(1, 5)))
            got = column_percentile(lambda parts=parts: iter(parts), q, dtype, 4)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                expected = np.nanpercentile(x.astype(np.float64), q, axis=0)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


def test_a_lazy_recording_is_read_block_by_block(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.LSTM(3, 6, num_layers=2, batch_first=True)
    batches = [torch.randn(4, 9, 3) for _ in range(3)]
    path = tmp_path / "acts.nc"
    seqacts.extract_to_netcdf(model, batches, path, progress=False)
    eager = seqacts.open_dataset(path).load()
    lazy = seqacts.open_dataset(path, chunks={"sample": 4})
    assert lazy["h"].chunks is not None
    read = []
    original = blocks.States.blocks

    def counting(self, unit=None):
        for first, values in original(self, unit):
            read.append(values.shape[0])
            yield first, values

    blocks.States.blocks = counting  # type: ignore[method-assign]
    try:
        got = seqacts.match(lazy, 0, "l1", slice(2, 5), top=10, threshold=0.0)
        top = lazy.seqacts.top_windows("l1", 3, width=4, top=5)
    finally:
        blocks.States.blocks = original  # type: ignore[method-assign]
    assert set(read) == {4}  # one Dask chunk of samples at a time
    xr.testing.assert_identical(got, eager.seqacts.match(0, "l1", slice(2, 5), top=10,
                                                         threshold=0.0))  # fmt: skip
    xr.testing.assert_identical(top, seqacts.top_windows(eager, "l1", 3, width=4, top=5))
    check_match(eager.assign_coords(group=("sample", np.arange(12) % 2)), 1, 0, 2, 5, top=10)


def test_mistakes_name_the_problem() -> None:
    ds = recording(0)
    cases = [
        (lambda: seqacts.match(ds, 999, "l0", slice(0, 2)), "no sample 999"),
        (lambda: seqacts.match(ds, 100, "lx", slice(0, 2)), "no layer 'lx'"),
        (lambda: seqacts.match(ds, 100, "l0", slice(3, 99)), "has 12"),
        (lambda: seqacts.match(ds, 100, "l0", slice(2, 2)), "0 <= start < stop"),
        (lambda: seqacts.match(ds, 100, "l0", 3), "slice"),  # type: ignore[arg-type]
        (lambda: seqacts.match(ds, 100, "l0", slice(0, 2), units=[9]), "units holds 9"),
        (lambda: seqacts.match(ds, 100, "l0", slice(0, 2), threshold=[1, 2]), "one per unit"),
        (lambda: seqacts.match(ds, 100, "l0", slice(0, 2), top=0), "positive"),
        (lambda: seqacts.match(ds, 100, "l0", slice(0, 2), direction="backward"), "direction"),
        (lambda: seqacts.match(ds, 100, "l0", slice(0, 2), threshold=9.0), "no unit"),
        (lambda: seqacts.top_windows(ds, "l1", 4), "units 0..3"),
        (lambda: seqacts.top_windows(ds, "l0", 0, width=0), "width"),
        (lambda: seqacts.top_windows(ds, "l0", 0, var="c"), "no variable 'c'"),
        (lambda: seqacts.top_windows(ds.assign(z=ds["h"].isel(time=0)), "l0", 0, var="z"),
         "per-step"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(seqacts.SeqactsError, match=message):
            call()
