"""``layer_internals`` against a float64 step-by-step loop written from PyTorch's equations.

The modules under test are real ``nn.LSTM/GRU/RNN`` layers run in float64 (packed for variable
lengths); their outputs feed ``layer_internals``, whose gates must match the loop and must
reproduce the module's own ``h``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqacts.capture.specs import DirectionWeights
from seqacts.capture.unroll import UnrollError, layer_internals
from seqacts.schema import INTERNALS as GATES

STEPS, BATCH, N_IN, HIDDEN = 7, 4, 3, 5
LENGTHS = [7, 3, 5, 1]
KINDS = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")
NAN = float("nan")


def make_module(kind: str, bias: bool = True, proj: int = 0) -> nn.RNNBase:
    torch.manual_seed(0)
    if kind == "LSTM":
        module: nn.RNNBase = nn.LSTM(N_IN, HIDDEN, bias=bias, proj_size=proj, bidirectional=True)
    elif kind == "GRU":
        module = nn.GRU(N_IN, HIDDEN, bias=bias, bidirectional=True)
    else:
        act = "relu" if kind == "RNN_RELU" else "tanh"
        module = nn.RNN(N_IN, HIDDEN, nonlinearity=act, bias=bias, bidirectional=True)
    return module.double().eval()


def run_module(
    module: nn.RNNBase, packed: bool, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """x (garbage past each length), output (NaN past it), h0, c0, lengths of one call."""
    torch.manual_seed(1)
    n_out = module.proj_size or module.hidden_size
    x = torch.randn(STEPS, BATCH, N_IN, dtype=torch.float64)
    h0 = torch.randn(2, BATCH, n_out, dtype=torch.float64)
    c0 = torch.randn(2, BATCH, HIDDEN, dtype=torch.float64) if module.mode == "LSTM" else None
    state = (h0, c0) if c0 is not None else h0
    with torch.no_grad():
        if packed:
            lengths = torch.tensor(LENGTHS)
            seq = pack_padded_sequence(x, lengths, enforce_sorted=False)
            out, _ = pad_packed_sequence(
                module(seq, state)[0], padding_value=NAN, total_length=STEPS
            )
            x = x.masked_fill(torch.arange(STEPS)[:, None, None] >= lengths[None, :, None], NAN)
        else:
            lengths = None
            out = module(x, state)[0]
    c0 = c0.to(dtype) if c0 is not None else None
    return x.to(dtype), out.to(dtype), h0.to(dtype), c0, lengths


def weights(module: nn.RNNBase, d: int, dtype: torch.dtype = torch.float64) -> DirectionWeights:
    sfx = "_l0" + ("_reverse" if d else "")
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    return DirectionWeights(*(
        getattr(module, n + sfx).detach().to(dtype) if hasattr(module, n + sfx) else None
        for n in names
    ))


def internals(
    module: nn.RNNBase,
    packed: bool,
    d: int,
    names: list[str] | None = None,
    dtype: torch.dtype = torch.float64,
) -> dict[str, Tensor]:
    x, out, h0, c0, lengths = run_module(module, packed, dtype)
    n_out = out.shape[-1] // 2
    return layer_internals(
        str(module.mode),
        x,
        out[..., d * n_out : (d + 1) * n_out],
        h0[d],
        c0[d] if c0 is not None else None,
        weights(module, d, dtype),
        lengths=lengths,
        reverse=d == 1,
        names=names,
    )


def reference(module: nn.RNNBase, packed: bool, d: int) -> dict[str, Tensor]:
    """The equations of PyTorch's docs, one sample and one step at a time, in float64."""
    x, _, h0, c0, _ = run_module(module, packed)
    kind = str(module.mode)
    w = weights(module, d)
    w_ih, w_hh, b_ih, b_hh, w_hr = w.w_ih, w.w_hh, w.b_ih, w.b_hh, w.w_hr
    zero = torch.zeros(w_ih.shape[0], dtype=torch.float64)
    b_ih = zero if b_ih is None else b_ih
    b_hh = zero if b_hh is None else b_hh
    n_out = h0.shape[-1]
    out = {n: torch.full((STEPS, BATCH, HIDDEN), NAN, dtype=torch.float64) for n in GATES[kind]}
    out["h"] = torch.full((STEPS, BATCH, n_out), NAN, dtype=torch.float64)
    for n in range(BATCH):
        length = LENGTHS[n] if packed else STEPS
        h = h0[d, n]
        c = c0[d, n] if c0 is not None else None
        for t in reversed(range(length)) if d else range(length):
            gi = w_ih @ x[t, n] + b_ih
            gh = w_hh @ h + b_hh
            if kind == "LSTM":
                i, f, g, o = (gi + gh).chunk(4)
                i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
                c = f * c + i * g
                h = o * c.tanh()
                h = w_hr @ h if w_hr is not None else h
                vals = {"c": c, "input_gate": i, "forget_gate": f, "cell_gate": g, "output_gate": o}
            elif kind == "GRU":
                (xr, xz, xn), (hr, hz, hn) = gi.chunk(3), gh.chunk(3)
                r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
                new = (xn + r * hn).tanh()
                h = (1 - z) * new + z * h
                vals = {"reset_gate": r, "update_gate": z, "new_gate": new}
            else:
                pre = gi + gh
                h = pre.tanh() if kind == "RNN_TANH" else pre.relu()
                vals = {"preactivation": pre}
            for name, v in vals.items():
                out[name][t, n] = v
            out["h"][t, n] = h
    return out


def close(actual: Tensor, expected: Tensor, tol: float = 1e-12) -> None:
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol, equal_nan=True)


CONFIGS = [
    (kind, bias, proj, packed)
    for kind in KINDS
    for bias in (True, False)
    for proj in ((0, 2) if kind == "LSTM" else (0,))
    for packed in (False, True)
]


@pytest.mark.parametrize(("kind", "bias", "proj", "packed"), CONFIGS)
@pytest.mark.parametrize("d", [0, 1], ids=["forward", "reverse"])
def test_matches_step_loop(kind: str, bias: bool, proj: int, packed: bool, d: int) -> None:
    module = make_module(kind, bias, proj)
    expected = reference(module, packed, d)
    n_out = expected["h"].shape[-1]
    _, out, *_ = run_module(module, packed)
    close(out[..., d * n_out : (d + 1) * n_out], expected["h"])  # the loop is PyTorch's recurrence
    actual = internals(module, packed, d)
    assert list(actual) == list(GATES[kind])
    for name in GATES[kind]:
        assert actual[name].shape == (STEPS, BATCH, HIDDEN)
        close(actual[name], expected[name], 1e-10)


@pytest.mark.parametrize(("kind", "bias", "proj", "packed"), CONFIGS)
@pytest.mark.parametrize("d", [0, 1], ids=["forward", "reverse"])
def test_reproduces_module_output(kind: str, bias: bool, proj: int, packed: bool, d: int) -> None:
    """The internals give back the kernel's own h: o * tanh(c) (projected), GRU's blend, act(a)."""
    module = make_module(kind, bias, proj)
    x, out, h0, _, lengths = run_module(module, packed)
    n_out = out.shape[-1] // 2
    h = out[..., d * n_out : (d + 1) * n_out]
    got = internals(module, packed, d)
    if kind == "LSTM":
        rebuilt = got["output_gate"] * got["c"].tanh()
        w_hr = weights(module, d).w_hr
        rebuilt = rebuilt @ w_hr.t() if w_hr is not None else rebuilt
    elif kind == "GRU":
        prev = torch.cat([h0[d, None], h[:-1]]) if d == 0 else torch.cat([h[1:], h0[d, None]])
        if d == 1 and lengths is not None:
            prev[lengths - 1, torch.arange(BATCH)] = h0[d]
        z = got["update_gate"]
        rebuilt = (1 - z) * got["new_gate"] + z * prev
    else:
        pre = got["preactivation"]
        rebuilt = pre.tanh() if kind == "RNN_TANH" else pre.relu()
    close(rebuilt, h)


@pytest.mark.parametrize(
    ("kind", "names"),
    [
        ("LSTM", ["c"]),
        ("LSTM", ["forget_gate"]),
        ("LSTM", ["output_gate", "input_gate"]),
        ("LSTM", ["cell_gate", "c"]),
        ("GRU", ["new_gate"]),
        ("GRU", ["update_gate"]),
        ("GRU", ["new_gate", "reset_gate"]),
        ("RNN_RELU", ["preactivation"]),
    ],
)
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("d", [0, 1], ids=["forward", "reverse"])
def test_name_subsets(kind: str, names: list[str], packed: bool, d: int) -> None:
    module = make_module(kind, proj=2 if kind == "LSTM" else 0)
    full = internals(module, packed, d)
    some = internals(module, packed, d, names)
    assert list(some) == names
    for name in names:
        close(some[name], full[name])


@pytest.mark.parametrize("kind", KINDS)
def test_float32_stays_float32(kind: str) -> None:
    module = make_module(kind)
    got = internals(module, True, 1, dtype=torch.float32)
    expected = reference(module, True, 1)
    for name, v in got.items():
        assert v.dtype == torch.float32
        close(v.double(), expected[name], 1e-5)


def test_padding_is_nan_and_garbage_stays_out() -> None:
    module = make_module("LSTM")
    x, out, h0, c0, lengths = run_module(module, True)
    invalid = torch.arange(STEPS)[:, None] >= lengths[None, :]
    w = weights(module, 1)
    clean = layer_internals(
        "LSTM", x, out[..., HIDDEN:], h0[1], c0[1], w, lengths=lengths, reverse=True
    )
    x2, out2 = x.clone(), out.clone()
    x2[invalid], out2[invalid] = 1e30, -1e30
    dirty = layer_internals(
        "LSTM", x2, out2[..., HIDDEN:], h0[1], c0[1], w, lengths=lengths, reverse=True
    )
    for name, v in clean.items():
        assert v[invalid].isnan().all() and v[~invalid].isfinite().all()
        close(dirty[name], v, 0.0)


@pytest.mark.parametrize(
    ("cell", "kind"),
    [
        (nn.LSTMCell, "LSTMCell"),
        (nn.GRUCell, "GRUCell"),
        (nn.RNNCell, "RNN_TANH"),
    ],
)
def test_single_cell_step(cell: type[nn.Module], kind: str) -> None:
    torch.manual_seed(0)
    module = cell(N_IN, HIDDEN).double()
    x = torch.randn(BATCH, N_IN, dtype=torch.float64)
    h0, c0 = torch.randn(2, BATCH, HIDDEN, dtype=torch.float64)
    with torch.no_grad():
        new = module(x, (h0, c0)) if kind == "LSTMCell" else module(x, h0)
    h = new[0] if isinstance(new, tuple) else new
    got = layer_internals(
        kind,
        x[None],
        h[None],
        h0,
        c0,
        DirectionWeights(module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh, None),
    )
    if kind == "LSTMCell":
        close(got["c"][0], new[1])
        close(got["output_gate"][0] * got["c"][0].tanh(), h)
    elif kind == "GRUCell":
        z = got["update_gate"][0]
        close((1 - z) * got["new_gate"][0] + z * h0, h)
    else:
        close(got["preactivation"][0].tanh(), h)


def test_records_no_autograd_graph() -> None:
    module = make_module("LSTM")
    x, out, h0, c0, _ = run_module(module, False)
    got = layer_internals(
        "LSTM",
        x,
        out[..., :HIDDEN],
        h0[0],
        c0[0],
        DirectionWeights(
            module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0, None
        ),
    )
    assert module.weight_ih_l0.requires_grad
    assert not any(v.requires_grad for v in got.values())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("names", [None, ["c", "forget_gate"], ["new_gate"], ["c"]])
def test_out_writes_into_strided_slots(kind: str, packed: bool, names: list[str] | None) -> None:
    """``out=`` slots of a sample-major (batch, layer, time, unit) buffer get exactly the values."""
    module = make_module(kind)
    wanted = [n for n in names or GATES[kind] if n in GATES[kind]]
    if not wanted:
        return
    x, out, h0, c0, lengths = run_module(module, packed)
    args = (x, out[..., HIDDEN:], h0[1], c0[1] if c0 is not None else None, weights(module, 1))
    fresh = layer_internals(kind, *args, lengths=lengths, reverse=True, names=wanted)
    buffer = torch.full((BATCH, 3, STEPS, HIDDEN + 2), -7.0, dtype=torch.float64)
    slots = {n: buffer[:, 1, :, 1 : HIDDEN + 1] for n in wanted[:1]}
    slots.update({n: torch.empty(BATCH, STEPS, HIDDEN, dtype=torch.float64) for n in wanted[1:]})
    got = layer_internals(kind, *args, lengths=lengths, reverse=True, names=wanted, out=slots)
    for n in wanted:
        assert got[n] is slots[n]
        close(got[n].transpose(0, 1), fresh[n])  # matmuls may round by layout: 1 ulp
    untouched = buffer.clone()
    untouched[:, 1, :, 1 : HIDDEN + 1] = -7.0
    assert (untouched == -7.0).all()  # nothing written outside the slot


def test_out_must_cover_every_name() -> None:
    module = make_module("LSTM")
    x, out, h0, c0, _ = run_module(module, False)
    w = weights(module, 0)
    slot = torch.empty(BATCH, STEPS, HIDDEN, dtype=torch.float64)
    with pytest.raises(UnrollError, match="out has no tensor for 'c'"):
        layer_internals("LSTM", x, out[..., :HIDDEN], h0[0], c0[0], w, names=["c"], out={})
    with pytest.raises(UnrollError, match=r"Expected out\['c'\] of shape"):
        layer_internals(
            "LSTM", x, out[..., :HIDDEN], h0[0], c0[0], w, names=["c"],
            out={"c": slot.transpose(0, 1)},
        )


def test_records_own_their_memory() -> None:
    """Zero-copy assembly never lets two datasets, or a dataset and the model output, share."""
    import seqacts

    torch.manual_seed(0)
    model = nn.LSTM(N_IN, HIDDEN, num_layers=3).eval()
    x = torch.randn(STEPS, BATCH, N_IN)
    with seqacts.record(model, internals=True) as outer:
        with seqacts.record(model, internals=["c"]) as inner:
            with torch.no_grad():
                y, _ = model(x)
            y_before = y.clone()
            y.mul_(0)  # the user's code changes the output in place
    a, b = outer.to_dataset(), inner.to_dataset()
    for name in ("h", "c"):
        assert not np.shares_memory(a[name].values, b[name].values)
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-5, atol=1e-6)
    top = torch.from_numpy(a.h.sel(layer="l2", direction=a.direction[0]).values)
    close(top.transpose(0, 1), y_before, 0.0)
    a.h.values[:] = 0  # and a dataset can be changed without changing the other
    assert (b.h.values != 0).any()


def test_errors_say_what_to_do() -> None:
    module = make_module("LSTM")
    x, out, h0, c0, _ = run_module(module, False)
    w = weights(module, 0)
    args = (x, out[..., :HIDDEN], h0[0], c0[0], w)
    with pytest.raises(UnrollError, match="unknown kind 'LSTMX'.*LSTM, GRU"):
        layer_internals("LSTMX", *args)
    with pytest.raises(UnrollError, match="no variable 'reset_gate'; available: c, input_gate"):
        layer_internals("LSTM", *args, names=["reset_gate"])
    with pytest.raises(UnrollError, match="needs c0; pass zeros of shape"):
        layer_internals("LSTM", x, out[..., :HIDDEN], h0[0], None, w, names=["c"])
    with pytest.raises(UnrollError, match=r"Expected h0 of shape \(4, 5\)"):
        layer_internals("LSTM", x, out[..., :HIDDEN], h0, c0[0], w)
    with pytest.raises(ValueError, match="Expected x to be 3D"):
        layer_internals("LSTM", x[0], out[..., :HIDDEN], h0[0], c0[0], w)
    # Without c, no c0 is needed.
    assert list(
        layer_internals("LSTM", x, out[..., :HIDDEN], h0[0], None, w, names=["forget_gate"])
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_cuda_matches_cpu(kind: str) -> None:
    module = make_module(kind, proj=2 if kind == "LSTM" else 0)
    x, out, h0, c0, lengths = run_module(module, True)
    n_out = out.shape[-1] // 2
    w = weights(module, 1)
    cpu_args = [x, out[..., n_out:], h0[1], c0[1] if c0 is not None else None]
    cpu = layer_internals(kind, *cpu_args, w, lengths=lengths, reverse=True)
    gpu_args = [a.cuda() if a is not None else None for a in cpu_args]
    gpu_w = DirectionWeights(*(getattr(w, f).cuda() if getattr(w, f) is not None else None
                               for f in ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr")))
    gpu = layer_internals(kind, *gpu_args, gpu_w, lengths=lengths.cuda(), reverse=True)
    for name, v in cpu.items():
        assert gpu[name].device.type == "cuda"
        close(gpu[name].cpu(), v, 1e-10)
