"""Hand-built datasets of the seqacts schema whose contents the tests know exactly.

``make_dataset`` fills every valid position with seeded random values of the right range and
every padded position (t >= length, units past a layer's width, the missing backward direction
of a unidirectional layer, variables of other kinds) with NaN, as ``seqacts.extract`` does.
The tests in this file check that the builder itself follows the schema.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

GATE_VARS = {
    "LSTM": ("c", "input_gate", "forget_gate", "cell_gate", "output_gate"),
    "GRU": ("reset_gate", "update_gate", "new_gate"),
    "RNN_TANH": ("preactivation",),
    "RNN_RELU": ("preactivation",),
}
BASE = {"LSTMCell": "LSTM", "GRUCell": "GRU", "RNNCell": "RNN_TANH"}
SIGMOID = ("input_gate", "forget_gate", "output_gate", "reset_gate", "update_gate")


@dataclass(frozen=True)
class L:
    """One layer of a hand-built dataset."""

    name: str
    kind: str = "LSTM"
    n_units: int = 4
    n_cell_units: int | None = None
    n_directions: int = 1

    @property
    def cell(self) -> int:
        return self.n_cell_units or self.n_units


DEFAULT_LAYERS = (
    L("enc.l0", "LSTM", 4, None, 2),
    L("enc.l1", "LSTM", 3, 5, 1),  # proj_size: h narrower than the cell
    L("dec", "GRUCell", 2, None, 1),
)


def make_dataset(
    layers: tuple[L, ...] = DEFAULT_LAYERS,
    n_samples: int = 6,
    n_time: int = 5,
    lengths: np.ndarray | None = None,
    internals: bool = True,
    seed: int = 0,
) -> xr.Dataset:
    """A dataset of the README's schema with random valid values and NaN padding."""
    rng = np.random.default_rng(seed)
    n_layers = len(layers)
    n_dir = max(lay.n_directions for lay in layers)
    width = max(max(lay.n_units, lay.cell) for lay in layers)
    if lengths is None:
        lengths = rng.integers(1, n_time + 1, size=(n_samples, 1)).repeat(n_layers, axis=1)
        lengths[0] = n_time
    lengths = np.broadcast_to(np.asarray(lengths), (n_samples, n_layers)).astype(np.int64)
    kinds = {BASE.get(lay.kind, lay.kind) for lay in layers}
    step_vars = ["h"] + ([v for k in sorted(kinds) for v in GATE_VARS[k]] if internals else [])
    state_vars = ["h_0", "h_n"] + (["c_0", "c_n"] if "LSTM" in kinds else [])
    nan = np.nan
    arrays = {v: np.full((n_samples, n_layers, n_dir, n_time, width), nan) for v in step_vars}
    arrays.update({v: np.full((n_samples, n_layers, n_dir, width), nan) for v in state_vars})
    for li, lay in enumerate(layers):
        base = BASE.get(lay.kind, lay.kind)
        own = ["h"] + (list(GATE_VARS[base]) if internals else [])
        for d in range(lay.n_directions):
            for s in range(n_samples):
                n = lengths[s, li]
                for v in own:
                    w = lay.n_units if v == "h" else lay.cell
                    if v in SIGMOID:
                        vals = rng.uniform(0, 1, (n, w))
                    elif v in ("c", "preactivation"):
                        vals = rng.normal(0, 2, (n, w))
                    else:
                        vals = rng.uniform(-1, 1, (n, w))
                    arrays[v][s, li, d, :n, :w] = vals
                arrays["h_0"][s, li, d, : lay.n_units] = rng.uniform(-1, 1, lay.n_units)
                last = n - 1 if d == 0 else 0
                arrays["h_n"][s, li, d, : lay.n_units] = arrays["h"][s, li, d, last, : lay.n_units]
                if base == "LSTM":
                    arrays["c_0"][s, li, d, : lay.cell] = 0.0
                    arrays["c_n"][s, li, d, : lay.cell] = rng.normal(0, 1, lay.cell)
    data_vars = {
        v: (("sample", "layer", "direction", "time", "unit"), arrays[v]) for v in step_vars
    }
    data_vars.update({v: (("sample", "layer", "direction", "unit"), arrays[v]) for v in state_vars})
    coords = {
        "sample": np.arange(n_samples),
        "layer": [lay.name for lay in layers],
        "direction": ["forward", "backward"][:n_dir],
        "time": np.arange(n_time),
        "unit": np.arange(width),
        "module": ("layer", [lay.name.rsplit(".l", 1)[0] for lay in layers]),
        "kind": ("layer", [lay.kind for lay in layers]),
        "n_units": ("layer", np.array([lay.n_units for lay in layers], dtype=np.int64)),
        "n_cell_units": ("layer", np.array([lay.cell for lay in layers], dtype=np.int64)),
        "n_directions": ("layer", np.array([lay.n_directions for lay in layers], dtype=np.int64)),
        "length": (("sample", "layer"), lengths.copy()),
    }
    attrs = {
        "seqacts_version": "0.1.0",
        "torch_version": "2.13.0",
        "model_class": "tests.HandBuilt",
        "created": "2026-01-01T00:00:00+00:00",
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def test_builder_pads_with_nan() -> None:
    ds = make_dataset()
    lengths = ds["length"].values
    h = ds["h"].values
    for s in range(ds.sizes["sample"]):
        for li in range(ds.sizes["layer"]):
            n, w, nd = (lengths[s, li], int(ds.n_units[li]), int(ds.n_directions[li]))
            assert np.isfinite(h[s, li, :nd, :n, :w]).all()
            assert np.isnan(h[s, li, :, n:, :]).all()
            assert np.isnan(h[s, li, :, :, w:]).all()
            assert np.isnan(h[s, li, nd:]).all()
    assert np.isnan(ds["forget_gate"].sel(layer="dec")).all()
    assert np.isfinite(ds["forget_gate"].sel(layer="enc.l1", unit=4, direction="forward")[0]).all()
