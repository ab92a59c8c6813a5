"""Property sweeps over random shapes and configurations (hypothesis).

Invariants that hold whatever the configuration: the model's own outputs are unchanged, the
recorded top layer is the module's output, ``h_n`` is ``h`` at each sample's last valid step
(step 0 for the backward direction), and everything past a sample's length or a layer's width
is NaN.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqacts

configs = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["LSTM", "GRU", "RNN"]),
        "layers": st.integers(1, 3),
        "bidi": st.booleans(),
        "hidden": st.integers(1, 6),
        "proj": st.integers(0, 3),
        "batch_first": st.booleans(),
        "n": st.integers(1, 4),
        "t": st.integers(1, 7),
        "packed": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


def build(cfg: dict) -> tuple[nn.RNNBase, int]:
    kw = {"num_layers": cfg["layers"], "bidirectional": cfg["bidi"],
          "batch_first": cfg["batch_first"]}
    if cfg["kind"] == "LSTM" and 0 < cfg["proj"] < cfg["hidden"]:
        kw["proj_size"] = cfg["proj"]
    torch.manual_seed(cfg["seed"])
    module = getattr(nn, cfg["kind"])(2, cfg["hidden"], **kw).eval()
    return module, int(kw.get("proj_size", cfg["hidden"]))


@settings(max_examples=60, deadline=None)
@given(configs, st.data())
def test_recorded_states_are_consistent(cfg, data):
    module, h_out = build(cfg)
    n, t = cfg["n"], cfg["t"]
    lengths = np.array(data.draw(st.lists(st.integers(1, t), min_size=n, max_size=n)))
    if not cfg["packed"]:
        lengths[:] = t
    x = torch.randn(n, t, 2) if cfg["batch_first"] else torch.randn(t, n, 2)
    arg = x
    if cfg["packed"]:
        arg = pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=cfg["batch_first"],
                                   enforce_sorted=False)
    with torch.no_grad():  # oneDNN's grad-mode kernels round differently: compare like with like
        plain = module(arg)
    with torch.no_grad(), seqacts.record(module) as rec:
        recorded = module(arg)
    out_a = plain[0].data if cfg["packed"] else plain[0]
    out_b = recorded[0].data if cfg["packed"] else recorded[0]
    assert torch.equal(out_a, out_b)
    ds = rec.to_dataset()

    n_dir = 2 if cfg["bidi"] else 1
    h = ds.h.values  # (sample, layer, direction, time, unit)
    assert h.shape[:2] == (n, cfg["layers"])
    np.testing.assert_array_equal(ds.length.values, np.repeat(lengths[:, None], cfg["layers"], 1))
    if cfg["packed"]:
        top, _ = pad_packed_sequence(recorded[0], batch_first=True, padding_value=float("nan"))
    else:
        top = recorded[0] if cfg["batch_first"] else recorded[0].transpose(0, 1)
    top = top.detach().numpy().reshape(n, -1, n_dir, h_out)
    np.testing.assert_array_equal(h[:, -1, :n_dir, : top.shape[1], :h_out], top.transpose(0, 2, 1, 3))
    h_n = ds.h_n.values
    hidden = recorded[1][0] if cfg["kind"] == "LSTM" else recorded[1]
    for k in range(cfg["layers"]):
        for d in range(n_dir):
            np.testing.assert_array_equal(h_n[:, k, d, :h_out], hidden[k * n_dir + d].numpy())
            for i in range(n):
                last = lengths[i] - 1 if d == 0 else 0
                np.testing.assert_array_equal(h[i, k, d, last, :h_out], h_n[i, k, d, :h_out])
                assert np.isnan(h[i, k, d, lengths[i]:]).all()
    assert np.isnan(h[..., h_out:]).all()
    assert np.isnan(h[:, :, n_dir:]).all()
