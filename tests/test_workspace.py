"""Gates read from the oneDNN LSTM kernel's workspace in grad mode (seqacts/workspace.py).

The layout rule is checked against float64 recomputations across hidden sizes on both sides
of oneDNN's padding rule; recorded values against the independent float64 reference; the
model's outputs and gradients bit for bit against plain forwards in both modes; and the
fallback (one warning, then recomputed gates) with a corrupted layout or a missing op.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from reference import reference_stack
from torch import nn

import seqacts
from seqacts.capture import workspace
from seqacts.capture.specs import DirectionWeights
from seqacts.capture.unroll import layer_internals
from seqacts.errors import WorkspaceWarning

T, N, N_IN = 5, 3, 4
LSTM_INTERNALS = ("c", "input_gate", "forget_gate", "cell_gate", "output_gate")
needs_onednn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason="needs a torch build with oneDNN"
)
needs_bf16 = pytest.mark.skipif(
    not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    reason="needs oneDNN bfloat16 support on this CPU",
)


@pytest.fixture
def spy(monkeypatch):
    """Counts the layers whose gates came from the workspace (and those that fell back)."""
    seen = {"workspace": 0, "fallback": 0}
    original = workspace.lstm_layer

    def counting(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        result = original(*args, **kwargs)
        seen["workspace" if result is not None and result[1] else "fallback"] += 1
        return result

    monkeypatch.setattr(workspace, "lstm_layer", counting)
    return seen


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(workspace, "warned", set())


def _run_layer(hidden: int, bidi: bool, dtype: torch.dtype = torch.float32):
    torch.manual_seed(hidden)
    lstm = nn.LSTM(N_IN, hidden, bidirectional=bidi).to(dtype)
    n_dir = 2 if bidi else 1
    x = torch.randn(T, N, N_IN, dtype=dtype)
    h0 = torch.randn(n_dir, N, hidden, dtype=dtype)
    c0 = torch.randn(n_dir, N, hidden, dtype=dtype)
    weights = [w.detach() for w in lstm._flat_weights]
    with torch.enable_grad():
        result = workspace.lstm_layer(x, h0, c0, weights, has_biases=True, train=False,
                                      bidirectional=bidi, batch_first=False)
    assert result is not None
    return lstm, x, h0, c0, weights, result


@needs_onednn
@pytest.mark.parametrize("hidden", [1, 4, 17, 32, 50, 64, 192, 256])
def test_workspace_gates_equal_recomputed_gates(hidden):
    lstm, x, h0, c0, weights, ((out, _, _), gates) = _run_layer(hidden, bidi=True)
    assert len(gates) == 2
    for d in range(2):
        w = [t.double() for t in weights[4 * d : 4 * d + 4]]
        h = out[..., d * hidden : (d + 1) * hidden].double()
        expected = layer_internals("LSTM", x.double(), h, h0[d].double(), c0[d].double(),
                                   DirectionWeights(*w, None), reverse=d == 1)
        got = gates[d].flip(0) if d == 1 else gates[d]  # kernel order -> time order
        for j, name in enumerate(("input_gate", "forget_gate", "cell_gate", "output_gate")):
            np.testing.assert_allclose(got[..., j * hidden : (j + 1) * hidden].double(),
                                       expected[name], rtol=0, atol=2e-6, err_msg=name)


@needs_bf16
@pytest.mark.parametrize("hidden", [4, 17, 64, 128])
def test_bfloat16_workspace_holds_bfloat16_gates(hidden):
    _, x, h0, _, weights, ((out, _, _), gates) = _run_layer(hidden, False, torch.bfloat16)
    assert gates and gates[0].dtype == torch.bfloat16
    assert workspace.gates_match(gates[0], x, out, h0[0], *weights, reverse=False)


@needs_onednn
@pytest.mark.parametrize("misread", ["row_length", "offset", "gate_order", "last_sample"])
def test_gates_match_rejects_misread_layouts(misread):
    _, x, h0, _, weights, ((out, _, _), gates) = _run_layer(50, bidi=False)
    rows = gates[0]
    args = (x, out, h0[0], *weights)
    assert workspace.gates_match(rows, *args, reverse=False)
    steps, batch, width = rows.shape
    ld = rows.stride(1)
    if misread == "row_length":  # the padding rule without its extra 16 values
        wrong = rows.as_strided(rows.shape, (batch * (ld - 16), ld - 16, 1))
    elif misread == "offset":
        wrong = rows.as_strided(rows.shape, rows.stride(), rows.storage_offset() + 1)
    elif misread == "gate_order":  # f, i, g, o
        hidden = width // 4
        wrong = torch.cat([rows[..., hidden : 2 * hidden], rows[..., :hidden],
                           rows[..., 2 * hidden :]], -1)
    else:  # only the last sample of the last step misread
        wrong = rows.clone()
        wrong[-1, -1] = wrong[-1, 0]
    assert not workspace.gates_match(wrong, *args, reverse=False)


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_layer_outputs_and_gradients_equal_the_kernel_call_bitwise(bias):
    torch.manual_seed(3)
    lstm = nn.LSTM(N_IN, 6, bidirectional=True, batch_first=True, bias=bias)
    weights = list(lstm._flat_weights)
    x = torch.randn(N, T, N_IN, requires_grad=True)
    h0 = torch.randn(2, N, 6, requires_grad=True)
    c0 = torch.randn(2, N, 6, requires_grad=True)
    with torch.enable_grad():
        expected = torch._VF.lstm(x, (h0, c0), weights, bias, 1, 0.0, True, True, True)
        got = workspace.lstm_layer(x, h0, c0, weights, has_biases=bias, train=True,
                                   bidirectional=True, batch_first=True)
        assert got is not None
        inputs = [x, h0, c0, *weights]
        loss = [sum((r * torch.linspace(-1, 1, r.numel()).view(r.shape)).sum() for r in res)
                for res in (expected, got[0])]
        grads = [torch.autograd.grad(v, inputs) for v in loss]
    for a, b in zip(expected, got[0], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


def _cases():
    for layers, bidi, bf, init, bias in (
        (1, False, False, False, True),
        (2, True, False, True, True),
        (2, False, True, True, False),
        (3, True, True, False, True),
    ):
        yield pytest.param(layers, bidi, bf, init, bias,
                           id=f"L{layers}-{'bi' if bidi else 'uni'}-{'bf' if bf else 'tf'}-"
                              f"{'h0' if init else 'noh0'}-{'bias' if bias else 'nobias'}")


def _model_and_inputs(layers, bidi, bf, init, bias, hidden=5, dtype=torch.float32):  # noqa: ANN001, ANN202
    torch.manual_seed(layers * 10 + bidi)
    lstm = nn.LSTM(N_IN, hidden, num_layers=layers, bidirectional=bidi, batch_first=bf,
                   bias=bias).to(dtype)
    n = layers * (2 if bidi else 1)
    x = torch.randn(N, T, N_IN, dtype=dtype)
    state = (torch.randn(n, N, hidden, dtype=dtype), torch.randn(n, N, hidden, dtype=dtype))
    return lstm, (x if bf else x.transpose(0, 1)), (state if init else None), x


def _assert_matches_reference(ds, lstm, x, state, hidden, tol):  # noqa: ANN001, ANN202
    h0, c0 = (s.double().numpy() for s in state) if state is not None else (None, None)
    expected = reference_stack(lstm, x.double().numpy(), None, h0, c0)
    for k, ref in enumerate(expected):
        layer = ds.isel(layer=k, direction=slice(0, ref["h"].shape[1]), unit=slice(0, hidden))
        for name in ("h", *LSTM_INTERNALS):
            np.testing.assert_allclose(layer[name].values.astype(np.float64), ref[name],
                                       rtol=tol, atol=tol, err_msg=name)


@needs_onednn
@pytest.mark.parametrize("layers,bidi,bf,init,bias", list(_cases()))
def test_grad_mode_internals_match_reference_and_keep_output_bits(spy, layers, bidi, bf, init,
                                                                  bias):
    lstm, arg, state, x = _model_and_inputs(layers, bidi, bf, init, bias)
    with torch.enable_grad():
        expected = lstm(arg, state)
        with seqacts.record(lstm, internals=True) as rec:
            got = lstm(arg, state)
    assert spy == {"workspace": layers, "fallback": 0}
    assert torch.equal(got[0], expected[0])
    assert all(torch.equal(a, b) for a, b in zip(got[1], expected[1], strict=True))
    _assert_matches_reference(rec.to_dataset(), lstm, x, state, 5, 2e-6)


@needs_onednn
@pytest.mark.parametrize("names", [["c"], ["forget_gate"], ["output_gate", "c"]])
def test_grad_mode_subsets_of_internals(spy, names):
    lstm, arg, state, x = _model_and_inputs(2, True, False, True, True)
    with torch.enable_grad():
        ds = seqacts.extract(lstm, arg, state, internals=names, grad=True)
    assert spy["workspace"] == 2 and set(names) <= set(ds.data_vars)
    assert not {"input_gate", "cell_gate"} & (set(ds.data_vars) - set(names))
    full = seqacts.extract(lstm, arg, state, internals=True, grad=True)
    for name in names:
        np.testing.assert_array_equal(ds[name].values, full[name].values)


@needs_onednn
def test_grad_mode_gradients_unchanged_by_recording():
    lstm, arg, state, _ = _model_and_inputs(2, True, False, True, True)
    grads = []
    for recording in (False, True):
        lstm.zero_grad()
        with seqacts.record(lstm, internals=True) if recording else _null():
            out, (h, c) = lstm(arg, state)
        (out.sum() + h.square().sum() + c.sin().sum()).backward()
        grads.append([p.grad.clone() for p in lstm.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a, b)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@needs_onednn
@pytest.mark.parametrize("layers,bidi,bf,init,bias", list(_cases())[1:3])
def test_no_grad_recording_keeps_output_bits_and_recomputes(spy, layers, bidi, bf, init, bias):
    lstm, arg, state, x = _model_and_inputs(layers, bidi, bf, init, bias)
    with torch.no_grad():
        expected = lstm(arg, state)
        with seqacts.record(lstm, internals=True) as rec:
            got = lstm(arg, state)
    assert spy["workspace"] == 0  # no training kernel, no workspace in no-grad mode
    assert torch.equal(got[0], expected[0])
    _assert_matches_reference(rec.to_dataset(), lstm, x, state, 5, 2e-6)


@needs_onednn
def test_extract_grad_true_reads_the_workspace(spy):
    lstm, arg, state, x = _model_and_inputs(2, True, False, True, True)
    ds = seqacts.extract(lstm, arg, state, internals=True, grad=True)
    assert spy["workspace"] == 2
    _assert_matches_reference(ds, lstm, x, state, 5, 2e-6)
    with torch.enable_grad():
        top = lstm(arg, state)[0].detach().view(T, N, 2, 5).permute(1, 2, 0, 3)
    np.testing.assert_array_equal(ds.h.isel(layer=1).values, top.numpy())


@needs_bf16
def test_bfloat16_grad_mode_matches_reference(spy):
    lstm, arg, state, x = _model_and_inputs(2, True, False, True, True, dtype=torch.bfloat16)
    with torch.enable_grad():
        expected = lstm(arg, state)[0]
        with seqacts.record(lstm, internals=True) as rec:
            got = lstm(arg, state)[0]
    assert spy["workspace"] == 2 and torch.equal(got, expected)
    ds = rec.to_dataset()
    # the reference runs from bfloat16 weights in float64; the kernel rounds h, c and the gates
    _assert_matches_reference(ds, lstm, x, state, 5, 6e-2)


@needs_onednn
def test_corrupted_layout_falls_back_with_one_warning(spy, fresh_warnings, monkeypatch):
    rows = workspace.gate_rows
    # one row off: what a changed padding rule would read
    monkeypatch.setattr(workspace, "gate_rows",
                        lambda space, steps, batch, hidden, dtype: rows(space[64:], steps, batch,
                                                                        hidden, dtype))
    lstm, arg, state, x = _model_and_inputs(2, True, False, True, True)
    with torch.enable_grad():
        expected = lstm(arg, state)
        with pytest.warns(WorkspaceWarning, match="workspace"):
            with seqacts.record(lstm, internals=True) as rec:
                got = lstm(arg, state)
        with warnings.catch_warnings():
            warnings.simplefilter("error", WorkspaceWarning)  # one warning per process
            with seqacts.record(lstm, internals=True):
                lstm(arg, state)
    assert spy == {"workspace": 0, "fallback": 4}
    assert torch.equal(got[0], expected[0])
    _assert_matches_reference(rec.to_dataset(), lstm, x, state, 5, 2e-6)


@needs_onednn
def test_missing_op_falls_back_with_a_warning(spy, fresh_warnings, monkeypatch):
    monkeypatch.setattr(workspace, "OP_NAME", "no_such_rnn_op")
    lstm, arg, state, x = _model_and_inputs(1, False, False, True, True)
    with torch.enable_grad(), pytest.warns(WorkspaceWarning, match="no_such_rnn_op"):
        ds = seqacts.extract(lstm, arg, state, internals=True, grad=True)
    assert spy == {"workspace": 0, "fallback": 1}
    _assert_matches_reference(ds, lstm, x, state, 5, 2e-6)


@needs_onednn
def test_nan_input_keeps_the_workspace_path(spy, fresh_warnings):
    lstm, arg, state, _ = _model_and_inputs(1, True, False, True, True)
    arg = arg.clone()
    arg[0, 1] = float("nan")  # sample 1 is NaN from its first step on (backward: at its last)
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", WorkspaceWarning)
        ds = seqacts.extract(lstm, arg, state, internals=True, grad=True)
    assert spy == {"workspace": 1, "fallback": 0}
    assert np.isnan(ds.forget_gate.isel(sample=1, direction=0).values).all()
    assert np.isfinite(ds.forget_gate.isel(sample=[0, 2], direction=0).values).all()


@needs_onednn
@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # torch.backends.mkldnn.flags' own note
def test_layers_off_the_onednn_training_kernel_are_recomputed(spy):
    lstm, arg, state, x = _model_and_inputs(1, False, False, True, True)
    with torch.enable_grad():
        with torch.backends.mkldnn.flags(enabled=False), seqacts.record(lstm, internals=True):
            lstm(arg, state)
        with seqacts.record(lstm.double(), internals=True) as rec:  # float64: not oneDNN
            lstm(arg.double(), tuple(s.double() for s in state))
        proj = nn.LSTM(N_IN, 5, proj_size=2)
        with seqacts.record(proj, internals=True):
            proj(arg)
    assert spy == {"workspace": 0, "fallback": 3}
    _assert_matches_reference(rec.to_dataset(), lstm, x, state, 5, 1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_grad_mode_records_reference_values():
    lstm, arg, state, x = _model_and_inputs(2, True, False, True, True)
    lstm = lstm.cuda()
    state = tuple(s.cuda() for s in state)
    ds = seqacts.extract(lstm, arg.cuda(), state, internals=True, grad=True)
    _assert_matches_reference(ds, lstm, x, tuple(s.cpu() for s in state), 5, 2e-6)
