"""The float64 reference (tests/reference.py) against torch's own modules run in float64.

Whole stacks (output, h_n, c_n), every layer on its own through a one-layer torch copy, the
internals teacher-forced through torch ops in the documented gate order, and the three cells.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import INTERNALS, reference_cell, reference_stack
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

TOL = {"rtol": 1e-10, "atol": 1e-10}
N, T, N_IN, H, PROJ = 4, 7, 3, 5, 3
LENGTHS = np.array([5, 7, 1, 4])  # unsorted, as enforce_sorted=False allows
KINDS: dict[str, Callable[..., nn.RNNBase]] = {
    "RNN_TANH": lambda **kw: nn.RNN(nonlinearity="tanh", **kw),
    "RNN_RELU": lambda **kw: nn.RNN(nonlinearity="relu", **kw),
    "LSTM": lambda **kw: nn.LSTM(**kw),
    "GRU": lambda **kw: nn.GRU(**kw),
}


def _cases():
    for kind, layers, bidi, proj, bias, packed, init in itertools.product(
        KINDS, (1, 2), (False, True), (0, PROJ), (True, False), (False, True), (False, True)
    ):
        if proj and kind != "LSTM":
            continue
        yield pytest.param(
            kind,
            layers,
            bidi,
            proj,
            bias,
            packed,
            init,
            id=f"{kind}-L{layers}-{'bi' if bidi else 'uni'}-p{proj}-{'b' if bias else 'nob'}"
            f"-{'packed' if packed else 'full'}-{'h0' if init else 'zero'}",
        )


def _make(kind: str, n_in: int, layers: int, bidi: bool, proj: int, bias: bool) -> nn.RNNBase:
    kw = {
        "input_size": n_in,
        "hidden_size": H,
        "num_layers": layers,
        "bidirectional": bidi,
        "bias": bias,
        "batch_first": True,
    }
    if proj:
        kw["proj_size"] = proj
    return KINDS[kind](**kw).double().eval()


def _run_torch(
    module: nn.RNNBase,
    x: np.ndarray,
    lengths: np.ndarray,
    packed: bool,
    h0: np.ndarray | None,
    c0: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """torch's own forward: output ``(N, T, D * H_out)``, ``h_n`` and ``c_n`` as PyTorch lays them."""
    arg = torch.as_tensor(x)
    if packed:
        arg = pack_padded_sequence(
            arg, torch.as_tensor(lengths), batch_first=True, enforce_sorted=False
        )
    state = None
    if h0 is not None:
        state = (
            (torch.as_tensor(h0), torch.as_tensor(c0)) if c0 is not None else torch.as_tensor(h0)
        )
    with torch.no_grad():
        out, hn = module(arg, state)
    if packed:
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    hn, cn = hn if isinstance(hn, tuple) else (hn, None)
    return out.numpy(), hn.numpy(), None if cn is None else cn.numpy()


def _valid(lengths: np.ndarray, steps: int) -> np.ndarray:
    """``(N, T)`` mask of the steps each sample really has."""
    return np.arange(steps)[None, :] < lengths[:, None]


def _flat(h: np.ndarray) -> np.ndarray:
    """``(N, D, T, W)`` -> ``(N, T, D * W)``, the layout of torch's output."""
    n, d, t, w = h.shape
    return h.transpose(0, 2, 1, 3).reshape(n, t, d * w)


def _state(v: np.ndarray) -> np.ndarray:
    """Reference ``(N, D, W)`` -> torch's ``(D, N, W)``."""
    return v.transpose(1, 0, 2)


def _assert_sequence(ref_h: np.ndarray, torch_out: np.ndarray, lengths: np.ndarray) -> None:
    valid = _valid(lengths, ref_h.shape[2])
    flat = _flat(ref_h)
    np.testing.assert_allclose(flat[valid], torch_out[valid], **TOL)
    assert np.isnan(flat[~valid]).all()
    assert not np.isnan(flat[valid]).any()


@pytest.mark.parametrize("kind,layers,bidi,proj,bias,packed,init", list(_cases()))
def test_stack_matches_torch(kind, layers, bidi, proj, bias, packed, init):
    # crc32, not hash(): str hashes change with every interpreter run
    torch.manual_seed(zlib.crc32(f"{kind}-{layers}-{bidi}-{proj}-{bias}".encode()))
    module = _make(kind, N_IN, layers, bidi, proj, bias)
    n_dir, h_out = 2 if bidi else 1, proj or H
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, T, N_IN))
    lengths = LENGTHS if packed else np.full(N, T)
    h0 = rng.standard_normal((layers * n_dir, N, h_out)) if init else None
    c0 = rng.standard_normal((layers * n_dir, N, H)) if init and kind == "LSTM" else None

    ref = reference_stack(module, x, lengths if packed else None, h0, c0)
    out, hn, cn = _run_torch(module, x, lengths, packed, h0, c0)

    assert len(ref) == layers
    _assert_sequence(ref[-1]["h"], out, lengths)
    np.testing.assert_allclose(np.concatenate([_state(r["h_n"]) for r in ref]), hn, **TOL)
    if kind == "LSTM":
        np.testing.assert_allclose(np.concatenate([_state(r["c_n"]) for r in ref]), cn, **TOL)
    else:
        assert "c" not in ref[0] and "c_n" not in ref[0]

    # every layer alone: a one-layer torch copy of layer k fed the reference's layer k-1
    layer_input = x
    for k, r in enumerate(ref):
        single = _make(kind, layer_input.shape[2], 1, bidi, proj, bias)
        with torch.no_grad():
            for name, p in single.named_parameters():
                p.copy_(getattr(module, name.replace("_l0", f"_l{k}")))
        rows = slice(k * n_dir, (k + 1) * n_dir)
        out_k, hn_k, cn_k = _run_torch(
            single,
            np.nan_to_num(layer_input),
            lengths,
            packed,
            None if h0 is None else h0[rows],
            None if h0 is None or c0 is None else c0[rows],
        )
        _assert_sequence(r["h"], out_k, lengths)
        np.testing.assert_allclose(_state(r["h_n"]), hn_k, **TOL)
        expected_h0 = np.zeros((n_dir, N, h_out)) if h0 is None else h0[rows]
        np.testing.assert_allclose(_state(r["h_0"]), expected_h0, **TOL)
        if kind == "LSTM":
            np.testing.assert_allclose(_state(r["c_n"]), cn_k, **TOL)
            expected_c0 = np.zeros((n_dir, N, H)) if c0 is None else c0[rows]
            np.testing.assert_allclose(_state(r["c_0"]), expected_c0, **TOL)
        for name in INTERNALS[kind]:
            assert r[name].shape == (N, n_dir, T, H), name
            assert np.isnan(
                r[name][~np.broadcast_to(_valid(lengths, T)[:, None], r[name].shape[:3])]
            ).all(), name
        _assert_internals(kind, module, k, r, layer_input, lengths)
        layer_input = _flat(r["h"])


def _previous(seq: np.ndarray, first: np.ndarray, lengths: np.ndarray, d: int) -> np.ndarray:
    """The state each step of direction ``d`` starts from: ``(N, T, W)``, NaN past length."""
    prev = np.full((seq.shape[0], seq.shape[2], seq.shape[3]), np.nan)
    for s, length in enumerate(lengths):
        if length == 0:
            continue
        if d == 0:
            prev[s, 0] = first[s, d]
            prev[s, 1:length] = seq[s, d, : length - 1]
        else:
            prev[s, length - 1] = first[s, d]
            prev[s, : length - 1] = seq[s, d, 1:length]
    return prev


def _assert_internals(
    kind: str,
    module: nn.RNNBase,
    k: int,
    r: dict[str, np.ndarray],
    layer_input: np.ndarray,
    lengths: np.ndarray,
) -> None:
    """Teacher-forced: each step's internals from torch ops on the documented equations."""
    valid = _valid(lengths, layer_input.shape[1])
    for d in range(r["h"].shape[1]):
        sfx = f"_l{k}" + ("_reverse" if d else "")
        p = {
            name: getattr(module, f"{name}{sfx}", None)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
        }
        x_t = torch.as_tensor(layer_input)
        h_prev = torch.as_tensor(_previous(r["h"], r["h_0"], lengths, d))
        with torch.no_grad():
            gi = F.linear(x_t, p["weight_ih"], p["bias_ih"])
            gh = F.linear(h_prev, p["weight_hh"], p["bias_hh"])
        got = {name: r[name][:, d] for name in INTERNALS[kind]}
        if kind == "LSTM":
            i, f, g, o = (gi + gh).chunk(4, dim=-1)
            expected = {
                "input_gate": i.sigmoid(),
                "forget_gate": f.sigmoid(),
                "cell_gate": g.tanh(),
                "output_gate": o.sigmoid(),
            }
            c_prev = _previous(r["c"], r["c_0"], lengths, d)
            expected["c"] = expected["forget_gate"] * torch.as_tensor(c_prev) + (
                expected["input_gate"] * expected["cell_gate"]
            )
            # h = o * tanh(c), then projected by W_hr when proj_size > 0
            h = got["output_gate"] * np.tanh(got["c"])
            if p["weight_hr"] is not None:
                h = h @ p["weight_hr"].detach().numpy().T
            np.testing.assert_allclose(h[valid], r["h"][:, d][valid], **TOL)
        elif kind == "GRU":
            (i_r, i_z, i_n), (h_r, h_z, h_n) = gi.chunk(3, -1), gh.chunk(3, -1)
            reset = (i_r + h_r).sigmoid()
            update = (i_z + h_z).sigmoid()
            new = (i_n + reset * h_n).tanh()
            expected = {"reset_gate": reset, "update_gate": update, "new_gate": new}
            h = (1 - update) * new + update * h_prev
            np.testing.assert_allclose(h.numpy()[valid], r["h"][:, d][valid], **TOL)
        else:
            expected = {"preactivation": gi + gh}
            act = np.tanh if kind == "RNN_TANH" else (lambda a: np.maximum(a, 0.0))
            np.testing.assert_allclose(act(got["preactivation"])[valid], r["h"][:, d][valid], **TOL)
        for name, value in expected.items():
            np.testing.assert_allclose(got[name][valid], value.numpy()[valid], **TOL, err_msg=name)


@pytest.mark.parametrize("proj", [0, PROJ])
def test_lstm_output_gate_times_tanh_c_is_h(proj):
    torch.manual_seed(3)
    module = _make("LSTM", N_IN, 2, True, proj, True)
    ref = reference_stack(module, np.random.default_rng(1).standard_normal((N, T, N_IN)), LENGTHS)
    for k, r in enumerate(ref):
        for d, sfx in enumerate(("", "_reverse")):
            h = r["output_gate"][:, d] * np.tanh(r["c"][:, d])
            if proj:
                h = h @ getattr(module, f"weight_hr_l{k}{sfx}").detach().numpy().T
            np.testing.assert_allclose(h, r["h"][:, d], **TOL)  # NaN where both are padding


def test_padded_backward_differs_from_packed_backward():
    """Unpacked input: the backward direction starts at T - 1 and reads the padding."""
    torch.manual_seed(4)
    module = _make("GRU", N_IN, 1, True, 0, True)
    x = np.random.default_rng(2).standard_normal((N, T, N_IN))
    out, _, _ = _run_torch(module, x, LENGTHS, False, None, None)
    packed = reference_stack(module, x, LENGTHS)[0]["h"]
    full = reference_stack(module, x)[0]["h"]
    _assert_sequence(full, out, np.full(N, T))
    short = LENGTHS < T
    assert not np.allclose(full[short, 1, 0], packed[short, 1, 0])
    np.testing.assert_allclose(full[:, 0, :1], packed[:, 0, :1], **TOL)


def test_reference_runs_no_torch_recurrent_kernel(monkeypatch):
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the reference called a torch recurrent kernel")

    for name in (
        "lstm",
        "gru",
        "rnn_tanh",
        "rnn_relu",
        "lstm_cell",
        "gru_cell",
        "rnn_tanh_cell",
        "rnn_relu_cell",
    ):
        monkeypatch.setattr(torch._VF, name, refuse, raising=False)
    monkeypatch.setattr(nn.Module, "__call__", refuse)
    x = np.ones((2, 3, N_IN))
    for kind in KINDS:
        reference_stack(_make(kind, N_IN, 2, True, PROJ if kind == "LSTM" else 0, True), x)
    reference_cell(nn.LSTMCell(N_IN, H), x[:, 0], np.zeros((2, H)))


CELLS: dict[str, Callable[[bool], nn.RNNCellBase]] = {
    "RNNCell-tanh": lambda bias: nn.RNNCell(N_IN, H, bias=bias, nonlinearity="tanh"),
    "RNNCell-relu": lambda bias: nn.RNNCell(N_IN, H, bias=bias, nonlinearity="relu"),
    "LSTMCell": lambda bias: nn.LSTMCell(N_IN, H, bias=bias),
    "GRUCell": lambda bias: nn.GRUCell(N_IN, H, bias=bias),
}
CELL_INTERNALS = {
    "RNNCell-tanh": "RNN_TANH",
    "RNNCell-relu": "RNN_RELU",
    "LSTMCell": "LSTM",
    "GRUCell": "GRU",
}


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("init", [True, False])
def test_cell_matches_torch(name, bias, init):
    torch.manual_seed(5)
    cell = CELLS[name](bias).double()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, N_IN))
    h = rng.standard_normal((N, H)) if init else np.zeros((N, H))
    c = rng.standard_normal((N, H)) if init else np.zeros((N, H))
    is_lstm = name == "LSTMCell"
    ref = reference_cell(cell, x, h, c if is_lstm else None)
    state = (torch.as_tensor(h), torch.as_tensor(c)) if is_lstm else torch.as_tensor(h)
    with torch.no_grad():
        got = cell(torch.as_tensor(x), state)
    h_t, c_t = got if is_lstm else (got, None)
    np.testing.assert_allclose(ref["h"], h_t.numpy(), **TOL)
    assert set(ref) == {"h", *INTERNALS[CELL_INTERNALS[name]]}
    for value in ref.values():
        assert value.shape == (N, H)
    if is_lstm:
        np.testing.assert_allclose(ref["c"], c_t.numpy(), **TOL)
        np.testing.assert_allclose(ref["output_gate"] * np.tanh(ref["c"]), ref["h"], **TOL)
    # one cell step is one step of a one-layer stack holding the same weights
    stack = KINDS[CELL_INTERNALS[name]](input_size=N_IN, hidden_size=H, bias=bias).double()
    with torch.no_grad():
        for pname, p in cell.named_parameters():
            getattr(stack, f"{pname}_l0").copy_(p)
    one = reference_stack(stack, x[:, None], None, h[None], c[None] if is_lstm else None)[0]
    for key, value in ref.items():
        np.testing.assert_allclose(one[key][:, 0, 0], value, **TOL, err_msg=key)


def test_lstm_cell_state_defaults_to_zeros():
    torch.manual_seed(6)
    cell = nn.LSTMCell(N_IN, H).double()
    x, h = np.ones((N, N_IN)), np.full((N, H), 0.5)
    with torch.no_grad():
        h_t, c_t = cell(torch.as_tensor(x), (torch.as_tensor(h), torch.zeros(N, H).double()))
    ref = reference_cell(cell, x, h)
    np.testing.assert_allclose(ref["h"], h_t.numpy(), **TOL)
    np.testing.assert_allclose(ref["c"], c_t.numpy(), **TOL)


def test_float32_module_is_read_in_float64():
    torch.manual_seed(8)
    module = nn.LSTM(N_IN, H, proj_size=PROJ)
    x = np.random.default_rng(4).standard_normal((N, T, N_IN))
    ref = reference_stack(module, x)
    with torch.no_grad():
        out, _ = module.double()(torch.as_tensor(x).transpose(0, 1))
    np.testing.assert_allclose(_flat(ref[0]["h"]), out.transpose(0, 1).numpy(), **TOL)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"x": np.zeros((N, T))}, "expected x of shape"),
        ({"x": np.zeros((N, T, N_IN + 1))}, "expected x of shape"),
        ({"lengths": np.array([T + 1] * N)}, "expected lengths"),
        ({"h0": np.zeros((2, N, H))}, "expected h0 of shape"),
    ],
)
def test_stack_rejects_bad_shapes(kwargs, match):
    module = nn.GRU(N_IN, H)
    args = {"x": np.zeros((N, T, N_IN)), **kwargs}
    with pytest.raises(ValueError, match=match):
        reference_stack(module, **args)
