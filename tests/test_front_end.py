"""A front end that is not built on torch modules: its own kind facts, its own per-call records,
the shared chain rule and assembly (``capture.groups.Recording``)."""

from __future__ import annotations

import numpy as np
import torch

from seqacts.capture.groups import Recording
from seqacts.capture.records import step_record
from seqacts.capture.specs import LayerSpec
from seqacts.kinds import KindSpec, register_kind

N, T, H = 2, 4, 3


class Model:
    """Stands for another framework's model: no nn.Module, weights with names and shapes."""

    class Weight:
        name, shape, dtype = "kernel", (H, H), "float32"

    weights = [Weight()]


def test_records_of_a_foreign_front_end_become_one_sample_per_series() -> None:
    register_kind(KindSpec(name="test.Foreign", states=("h",), one_step=True, tanh_bounded=True))
    spec = LayerSpec(label="rnn", module_path="rnn", kind="test.Foreign", index=0, n_units=H,
                     n_cell_units=H, n_directions=1, is_cell=True)
    recording = Recording([spec])
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.normal(size=(H, H)))
    x = torch.from_numpy(rng.normal(size=(N, T, H)))
    for _ in range(2):  # two forward calls of the foreign model: two groups
        group = recording.new_group()
        h = torch.zeros(N, H, dtype=torch.float64)
        for t in range(T):
            new = torch.tanh(x[:, t] + h @ w)
            group.add("rnn", step_record(h, None, new, None, {}), x[:, t], new)
            h = new  # the state passed on is the one returned: the chain rule links the calls
        recording.close(group)
    ds = recording.dataset(Model(), time=None)
    assert ds.sizes["sample"] == 2 * N and ds.sizes["time"] == T
    assert list(ds["kind"].values) == ["test.Foreign"]
    ref, hs = np.zeros((N, H)), []
    for t in range(T):
        ref = np.tanh(x[:, t].numpy() + ref @ w.numpy())
        hs.append(ref)
    np.testing.assert_allclose(ds["h"].values[:N, 0, 0], np.stack(hs, 1), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ds["h"].values[N:], ds["h"].values[:N])
    assert ds.attrs["model_class"].endswith("Model") and len(ds.attrs["model_structure"]) == 40
