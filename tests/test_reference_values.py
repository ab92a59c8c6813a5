"""``ablate(value="mean" | "resample", reference=ds)`` and ``ablation_scan(value=...)`` against
the same edit applied by hand in the float64 reference step loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import reference_stack
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqacts
from seqacts import EditError

N, T, F, H = 3, 6, 2, 4
REF_LENGTHS = [6, 4, 6, 3, 6]


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    lstm = nn.LSTM(F, H, 2, batch_first=True).double().eval()
    x = torch.randn(N, T, F, dtype=torch.float64)
    xr_ = torch.randn(len(REF_LENGTHS), T, F, dtype=torch.float64)
    packed = pack_padded_sequence(xr_, torch.tensor(REF_LENGTHS), batch_first=True,
                                  enforce_sorted=False)  # fmt: skip
    ref = seqacts.extract(lstm, packed, internals=["c"])
    return lstm, x, ref


def _valid(ref, state: str, layer: str) -> np.ndarray:
    """(sample, time, unit) with NaN past each reference sample's length, by hand."""
    v = ref[state].sel(layer=layer, direction="forward").values.copy()
    for i, n in enumerate(REF_LENGTHS):
        v[i, n:] = np.nan
    return v


def _run(lstm, x, edit) -> np.ndarray:
    return seqacts.extract(lstm, x, edits=edit)["h"].sel(layer="l1", direction="forward").values


def _reference(lstm, x, layer: int, state: str, units, values_at) -> np.ndarray:
    def edit(k, d, s, t):
        return [(state, units, values_at(s, t))] if k == layer and d == 0 else []

    return reference_stack(lstm, x.numpy(), edit=edit)[-1]["h"][:, 0]


@pytest.mark.parametrize("state", ["h", "c"])
def test_mean_over_valid_steps(setup, state: str) -> None:
    lstm, x, ref = setup
    units = [0, 2]
    mean = np.nanmean(_valid(ref, state, "l0"), axis=(0, 1))[units]
    got = _run(lstm, x, seqacts.ablate("l0", units, state=state, value="mean", reference=ref))
    expected = _reference(lstm, x, 0, state, units, lambda s, t: mean)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_mean_per_step(setup) -> None:
    lstm, x, ref = setup
    per_t = np.nanmean(_valid(ref, "h", "l0"), axis=0)  # (time, unit)
    edit = seqacts.ablate("l0", [1, 3], value="mean", reference=ref, per_step=True)
    got = _run(lstm, x, edit)
    expected = _reference(lstm, x, 0, "h", [1, 3], lambda s, t: per_t[t, [1, 3]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_resample_draws_whole_length_reference_samples(setup) -> None:
    lstm, x, ref = setup
    full = _valid(ref, "h", "l0")[np.array(REF_LENGTHS) == T]
    rows = torch.randint(full.shape[0], (N,), generator=torch.Generator().manual_seed(7))
    drawn = full[rows.numpy()]  # (N, T, H)
    edit = seqacts.ablate("l0", [0, 1, 2], value="resample", reference=ref, seed=7)
    got = _run(lstm, x, edit)
    expected = _reference(lstm, x, 0, "h", [0, 1, 2], lambda s, t: drawn[s, t, :3])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    again = _run(lstm, x, seqacts.ablate("l0", [0, 1, 2], value="resample", reference=ref, seed=7))
    np.testing.assert_array_equal(got, again)


@pytest.mark.parametrize("value", ["mean", "resample"])
def test_ablation_scan_takes_the_same_values(setup, value: str) -> None:
    lstm, x, ref = setup

    def score(y) -> torch.Tensor:
        return y[0].pow(2).sum(dim=(1, 2))

    scan = seqacts.ablation_scan(lstm, x, score, layers="l0", units={"l0": [1, 2]},
                                 value=value, reference=ref, seed=3)  # fmt: skip
    base = score(lstm(x)).detach().numpy()
    for u in (1, 2):
        edit = seqacts.ablate("l0", u, value=value, reference=ref, seed=3)
        with torch.no_grad(), seqacts.intervene(lstm, edit):
            edited = score(lstm(x)).numpy()
        np.testing.assert_allclose(scan["effect"].sel(layer="l0", direction="forward",
                                                      unit=u).values, edited - base,
                                   rtol=1e-9, atol=1e-12)  # fmt: skip


def test_errors_name_the_fix(setup) -> None:
    lstm, x, ref = setup
    with pytest.raises(EditError, match="reference="):
        seqacts.ablate("l0", 0, value="mean")
    with pytest.raises(EditError, match="'mean' or 'resample'"):
        seqacts.ablate("l0", 0, value="median", reference=ref)
    with pytest.raises(EditError, match="reference= and per_step="):
        seqacts.ablate("l0", 0, value=0.5, reference=ref)
    with pytest.raises(EditError, match="internals"):
        seqacts.extract(lstm, x, edits=seqacts.ablate("l0", 0, state="c", value="mean",
                                                      reference=ref[["h"]]))  # fmt: skip
