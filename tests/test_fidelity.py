"""Recorded values against the independent float64 reference (tests/reference.py).

Every configuration of the core issue's matrix: kind x num_layers x bidirectional x
batch_first x proj_size x PackedSequence x given initial state x unbatched input, and the
three cells driven in a loop.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import torch
from reference import reference_cell, reference_stack
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqacts

TOL = {"rtol": 1e-9, "atol": 1e-9}
N, T, N_IN, H = 3, 6, 4, 5
LENGTHS = np.array([6, 2, 4])
KINDS = {
    "RNN_TANH": lambda **kw: nn.RNN(nonlinearity="tanh", **kw),
    "RNN_RELU": lambda **kw: nn.RNN(nonlinearity="relu", **kw),
    "LSTM": lambda **kw: nn.LSTM(**kw),
    "GRU": lambda **kw: nn.GRU(**kw),
}
INTERNALS = {
    "LSTM": ("c", "input_gate", "forget_gate", "cell_gate", "output_gate"),
    "GRU": ("reset_gate", "update_gate", "new_gate"),
    "RNN_TANH": ("preactivation",),
    "RNN_RELU": ("preactivation",),
}


class Wrapper(nn.Module):
    """A model holding the stack at path ``rnn``; passes the state through when given."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x, hx=None):  # noqa: ANN001, ANN201
        return self.rnn(x, hx)


def _cases():
    for kind, layers, bidi, bf, proj, packed, init, unbatched in itertools.product(
        KINDS, (1, 2), (False, True), (False, True), (0, 2), (False, True), (False, True),
        (False, True),
    ):
        if proj and kind != "LSTM":
            continue
        if packed and unbatched:
            continue
        yield pytest.param(
            kind, layers, bidi, bf, proj, packed, init, unbatched,
            id=f"{kind}-L{layers}-{'bi' if bidi else 'uni'}-{'bf' if bf else 'tf'}-p{proj}"
            f"-{'packed' if packed else 'padded'}-{'h0' if init else 'noh0'}"
            f"-{'2d' if unbatched else '3d'}",
        )


@pytest.mark.parametrize("kind,layers,bidi,bf,proj,packed,init,unbatched", list(_cases()))
def test_stack_matches_reference(kind, layers, bidi, bf, proj, packed, init, unbatched):
    torch.manual_seed(zlib.crc32(f"{kind}{layers}{bidi}{bf}{proj}".encode()))  # stable per run
    kw = {"input_size": N_IN, "hidden_size": H, "num_layers": layers, "bidirectional": bidi,
          "batch_first": bf}
    if proj:
        kw["proj_size"] = proj
    model = Wrapper(KINDS[kind](**kw)).double().eval()
    n_dir = 2 if bidi else 1
    h_out = proj or H
    x = torch.randn(N, T, N_IN, dtype=torch.float64)
    lengths = LENGTHS if packed else np.full(N, T)
    h0 = torch.randn(layers * n_dir, N, h_out, dtype=torch.float64) if init else None
    c0 = torch.randn(layers * n_dir, N, H, dtype=torch.float64) if init else None
    if unbatched:
        x, lengths = x[:1], lengths[:1]
        h0 = h0[:, :1] if h0 is not None else None
        c0 = c0[:, :1] if c0 is not None else None
    expected = reference_stack(
        model.rnn, x.numpy(), lengths,
        h0.numpy() if h0 is not None else None, c0.numpy() if c0 is not None else None,
    )
    arg = x if bf else x.transpose(0, 1)
    if unbatched:
        arg = x[0]
    if packed:
        arg = pack_padded_sequence(arg, torch.as_tensor(lengths), batch_first=bf,
                                   enforce_sorted=False)
    state = None
    if init:
        state = (h0, c0) if kind == "LSTM" else h0
        if unbatched:
            state = tuple(s[:, 0] for s in state) if kind == "LSTM" else state[:, 0]
    ds = seqacts.extract(model, arg, state, internals=True)

    assert list(ds.layer.values) == [f"rnn.l{k}" for k in range(layers)]
    assert ds.sizes["sample"] == x.shape[0]
    np.testing.assert_array_equal(ds.length.values, np.repeat(lengths[:, None], layers, 1))
    for k, ref in enumerate(expected):
        layer = ds.sel(layer=f"rnn.l{k}").isel(direction=slice(0, n_dir))
        assert int(layer.n_units) == h_out and int(layer.n_cell_units) == H
        np.testing.assert_allclose(layer.h.values[..., :h_out], ref["h"], **TOL)
        np.testing.assert_allclose(layer.h_0.values[..., :h_out], ref["h_0"], **TOL)
        np.testing.assert_allclose(layer.h_n.values[..., :h_out], ref["h_n"], **TOL)
        assert np.isnan(layer.h.values[..., h_out:]).all()
        if kind == "LSTM":
            np.testing.assert_allclose(layer.c_0.values[..., :H], ref["c_0"], **TOL)
            np.testing.assert_allclose(layer.c_n.values[..., :H], ref["c_n"], **TOL)
        for name in INTERNALS[kind]:
            np.testing.assert_allclose(layer[name].values[..., :H], ref[name], **TOL,
                                       err_msg=name)
    if not bidi:
        assert ds.sizes["direction"] == 1


def test_unidirectional_layer_has_nan_backward_direction():
    class TwoStacks(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.GRU(N_IN, H, bidirectional=True)
            self.b = nn.LSTM(2 * H, 3)

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.b(self.a(x)[0])

    ds = seqacts.extract(TwoStacks().eval(), torch.randn(T, N, N_IN))
    assert list(ds.direction.values) == ["forward", "backward"]
    assert np.isnan(ds.h.sel(layer="b.l0", direction="backward")).all()
    assert not np.isnan(ds.h.sel(layer="b.l0", direction="forward", unit=[0, 1, 2])).any()
    assert np.isnan(ds.c_n.sel(layer="a.l0")).all()  # c of a GRU layer does not exist
    assert np.isnan(ds.h.sel(layer="b.l0", unit=[3, 4])).all()  # past the layer's width


CELLS = {
    "LSTMCell": lambda: nn.LSTMCell(N_IN, H),
    "GRUCell": lambda: nn.GRUCell(N_IN, H),
    "RNNCell-tanh": lambda: nn.RNNCell(N_IN, H, nonlinearity="tanh"),
    "RNNCell-relu": lambda: nn.RNNCell(N_IN, H, nonlinearity="relu"),
    "LSTMCell-nobias": lambda: nn.LSTMCell(N_IN, H, bias=False),
}


class CellLoop(nn.Module):
    """Runs its cell over time from a method other than forward."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def step(self, x, state):  # noqa: ANN001, ANN201
        return self.cell(x, state)

    def forward(self, x, state=None):  # noqa: ANN001, ANN201
        for t in range(x.shape[-2] if x.dim() == 3 else x.shape[0]):
            xt = x[:, t] if x.dim() == 3 else x[t]
            state = self.step(xt, state)
        return state


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("init", [False, True])
@pytest.mark.parametrize("unbatched", [False, True])
def test_cell_loop_matches_reference(name, init, unbatched):
    torch.manual_seed(7)
    model = CellLoop(CELLS[name]()).double()
    x = torch.randn(N, T, N_IN, dtype=torch.float64)
    is_lstm = name.startswith("LSTM")
    h = torch.randn(N, H, dtype=torch.float64) if init else torch.zeros(N, H, dtype=torch.float64)
    c = torch.randn(N, H, dtype=torch.float64) if init else torch.zeros(N, H, dtype=torch.float64)
    if unbatched:
        x, h, c = x[:1], h[:1], c[:1]
    state = ((h, c) if is_lstm else h) if init else None
    if unbatched and state is not None:
        state = tuple(s[0] for s in state) if is_lstm else state[0]
    ds = seqacts.extract(model, x[0] if unbatched else x, state, internals=True)
    assert list(ds.layer.values) == ["cell"]
    assert ds.sizes["time"] == T and ds.sizes["sample"] == x.shape[0]
    hn, cn = h.numpy(), c.numpy()
    layer = ds.sel(layer="cell", direction="forward")
    np.testing.assert_allclose(layer.h_0.values, hn, **TOL)
    for t in range(T):
        ref = reference_cell(model.cell, x[:, t].numpy(), hn, cn if is_lstm else None)
        step = layer.isel(time=t)
        np.testing.assert_allclose(step.h.values, ref["h"], **TOL)
        for var in [k for k in ref if k != "h"]:
            np.testing.assert_allclose(step[var].values, ref[var], **TOL, err_msg=var)
        hn, cn = ref["h"], ref.get("c", cn)
    np.testing.assert_allclose(layer.h_n.values, hn, **TOL)
    assert (ds.length.values == T).all()


def _o_tanh_c(layer, w_hr=None):  # noqa: ANN001, ANN202
    o, c = layer.output_gate.values, layer.c.values
    h = o * np.tanh(c)
    return h if w_hr is None else h @ w_hr.T


@pytest.mark.parametrize("proj", [0, 3])
def test_output_gate_times_tanh_c_reproduces_h_with_dropout_in_train_mode(proj):
    torch.manual_seed(5)
    kw = {"proj_size": proj} if proj else {}
    lstm = nn.LSTM(N_IN, 6, num_layers=3, dropout=0.5, bidirectional=True, **kw).double().train()
    ds = seqacts.extract(lstm, torch.randn(T, N, N_IN, dtype=torch.float64), internals=True)
    width = proj or 6
    for k in range(3):
        for d, sfx in enumerate(("", "_reverse")):
            layer = ds.sel(layer=f"l{k}").isel(direction=d, unit=slice(0, 6))
            w_hr = getattr(lstm, f"weight_hr_l{k}{sfx}").detach().numpy() if proj else None
            np.testing.assert_allclose(_o_tanh_c(layer, w_hr), layer.h.values[..., :width], **TOL)


@pytest.mark.parametrize("kind", list(KINDS))
def test_float32_model_within_float32_tolerance(kind):
    torch.manual_seed(11)
    module = KINDS[kind](input_size=N_IN, hidden_size=H, num_layers=2, bidirectional=True).eval()
    x = torch.randn(T, N, N_IN)
    ds = seqacts.extract(module, x, internals=True)
    assert ds.h.dtype == np.float32
    expected = reference_stack(module, x.transpose(0, 1).double().numpy())
    for k, ref in enumerate(expected):
        layer = ds.sel(layer=f"l{k}").isel(unit=slice(0, H))
        for name in ("h", *INTERNALS[kind]):
            np.testing.assert_allclose(layer[name].values, ref[name], rtol=1e-5, atol=1e-5,
                                       err_msg=name)
