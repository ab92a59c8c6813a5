"""Recurrences the proof-based chain rule cannot lay out alone (issue 20), in plain torch.

- a state transformed between steps (GRU-D / BRITS temporal decay ``h = cell(x_t, h * gamma_t)``,
  a norm on ``h``): warned when it splits the layout, one sample per series with the declared
  continuation ``chain=``, which also records the received state as ``h_in``/``c_in`` (torch
  cells, a stepped ``nn.LSTM``, a Python cell given as ``cells=``);
- dual-path layouts (asteroid DPRNN, demucs): layers alternate between two row counts and get
  two row sets, not one per layer.

Values are checked against what the modules returned (plain forward hooks) and the float64
reference in tests/reference.py; every call row appears exactly once.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from reference import reference_cell, reference_stack
from torch import nn

import seqacts

B, T = 3, 5


class DecayRNN(nn.Module):
    """GRU-D-like: the state decays by ``gamma_t`` before every step; ``fire`` says where."""

    def __init__(self, fire: str, kind: type[nn.RNNCellBase] = nn.GRUCell) -> None:
        super().__init__()
        self.cell = kind(3, 4)
        self.fire = fire

    def gamma(self, t: int, h: torch.Tensor) -> torch.Tensor:
        gamma = torch.ones_like(h)
        if self.fire == "one" and t == 2:
            gamma[1] = 0.5
        elif self.fire == "all":
            gamma = gamma * torch.exp(-0.1 * torch.arange(1, h.shape[1] + 1.0))
        return gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], 4)
        c = torch.zeros_like(h)
        out = []
        for t in range(x.shape[1]):
            if isinstance(self.cell, nn.LSTMCell):
                h, c = self.cell(x[:, t], (h * self.gamma(t, h), c * 0.9))
            else:
                h = self.cell(x[:, t], h * self.gamma(t, h))
            out.append(h)
        return torch.stack(out, 1)


def hooked_steps(model: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """(input, state received, state returned) of every call of ``model.cell``, by a hook."""
    calls: list[tuple[torch.Tensor, ...]] = []

    def keep(module, args, out):  # noqa: ANN001, ANN202
        state = args[1] if isinstance(args[1], tuple) else (args[1],)
        returned = out if isinstance(out, tuple) else (out,)
        calls.append((args[0].clone(), *(s.clone() for s in state), *(r.clone() for r in returned)))

    handle = model.cell.register_forward_hook(keep)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return calls


def quiet(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    """``fn(...)``, checking that it warns nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


def one_warning(fn, match: str, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
    with pytest.warns(seqacts.RecordingWarning) as caught:
        ds = fn(*args, **kwargs)
    messages = [str(w.message) for w in caught if issubclass(w.category, seqacts.RecordingWarning)]
    assert len(messages) == 1, messages
    assert "chain={'cell': 'steps'}" in messages[0] and match in messages[0], messages[0]
    return ds


def all_rows(ds, width: int = 4) -> list[bytes]:  # noqa: ANN001
    """Every valid (sample, step) value of h, as bytes, sorted: what was recorded at all."""
    h, length = ds.h.values[:, 0, 0, :, :width], ds.length.values[:, 0]
    assert all(np.isnan(h[s, length[s]:]).all() for s in range(len(length)))
    return sorted(h[s, t].tobytes() for s in range(len(length)) for t in range(length[s]))


@pytest.mark.parametrize("fire", ["none", "one", "all"])
def test_decay_without_a_declaration_is_laid_out_and_told(fire):
    torch.manual_seed(0)
    model, x = DecayRNN(fire).eval(), torch.randn(B, T, 3)
    steps = hooked_steps(model, x)
    expected = sorted(s[-1][r].numpy().tobytes() for s in steps for r in range(B))
    if fire == "none":  # h * 1 is bitwise h: proven, one sample per series, nothing to tell
        ds = quiet(seqacts.extract, model, x)
        assert ds.length.values[:, 0].tolist() == [T] * B
    elif fire == "one":  # one row changed at step 2: the step starts new samples, told
        ds = one_warning(seqacts.extract, "some but not all rows", model, x)
        assert ds.length.values[:, 0].tolist() == [2] * B + [3] * B
    else:  # every step changed: one sample per step, told once, naming the option
        ds = one_warning(seqacts.extract, "cell calls 1, 2, 3, 4 started new samples", model, x)
        assert ds.length.values[:, 0].tolist() == [1] * (B * T)
    assert all_rows(ds) == expected  # nothing lost or doubled
    assert "h_in" not in ds


@pytest.mark.parametrize("kind", [nn.GRUCell, nn.LSTMCell])
@pytest.mark.parametrize("fire", ["none", "one", "all"])
@pytest.mark.parametrize("chain", [{"cell": "steps"}, "cell", ["cel*"]])
def test_declared_continuation_gives_one_sample_per_series(fire, kind, chain):
    torch.manual_seed(1)
    model, x = DecayRNN(fire, kind).eval(), torch.randn(B, T, 3)
    steps = hooked_steps(model, x)
    ds = quiet(seqacts.extract, model, x, chain=chain, internals=True)
    assert ds.sizes["sample"] == B and ds.length.values[:, 0].tolist() == [T] * B
    lstm = kind is nn.LSTMCell
    for t, (x_t, *states) in enumerate(steps):
        h_in, c_in = (states[0], states[1]) if lstm else (states[0], None)
        h_out = states[2] if lstm else states[1]
        got = ds.isel(layer=0, direction=0, time=t)
        np.testing.assert_array_equal(got.h.values, h_out.numpy())  # bitwise the kernel's
        np.testing.assert_array_equal(got.h_in.values, h_in.numpy())  # the state it received
        if lstm:
            np.testing.assert_array_equal(got.c_in.values, c_in.numpy())
            np.testing.assert_array_equal(got.c.values, states[3].numpy())
        ref = reference_cell(model.cell, x_t.numpy(), h_in.numpy(),
                             c_in.numpy() if lstm else None)
        np.testing.assert_allclose(got.h.values, ref["h"], atol=1e-6)
        gate = "forget_gate" if lstm else "update_gate"
        np.testing.assert_allclose(got[gate].values, ref[gate], atol=1e-6)
    np.testing.assert_array_equal(ds.h_0.values[:, 0, 0], steps[0][1].numpy())
    np.testing.assert_array_equal(ds.h_n.values[:, 0, 0], steps[-1][-2 if lstm else -1].numpy())
    assert ("c_in" in ds) is lstm
    assert ds.h_in.attrs["long_name"] == "received hidden state"


class NormedSteps(nn.Module):
    """An nn.LSTM stepped one step at a time with a layer norm on h between the steps."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4, batch_first=True, bidirectional=True)
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state, outs = None, []
        for t in range(x.shape[1]):
            out, (h, c) = self.rnn(x[:, t : t + 1], state)
            state = (self.norm(h), c)
            outs.append(out)
        return torch.cat(outs, 1)


def test_declared_stack_layer_stepped_with_a_norm_between_steps():
    torch.manual_seed(2)
    model, x = NormedSteps().eval(), torch.randn(B, T, 3)
    with pytest.warns(seqacts.RecordingWarning, match=r"chain=\{'rnn.l0': 'steps'\}"):
        undeclared = seqacts.extract(model, x)
    assert undeclared.sizes["sample"] == B * T
    calls: list[tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor]] = []
    handle = model.rnn.register_forward_hook(
        lambda m, args, out: calls.append((args[0], args[1] if len(args) > 1 else None, out[0])))
    try:
        ds = quiet(seqacts.extract, model, x, chain="rnn")
    finally:
        handle.remove()
    assert ds.sizes["sample"] == B and ds.length.values[:, 0].tolist() == [T] * B
    for t, (x_t, state, out) in enumerate(calls):
        got = ds.isel(layer=0, time=t)
        np.testing.assert_array_equal(got.h.values.reshape(B, -1), out[:, 0].numpy())
        if state is None:
            continue
        h0 = state[0].numpy()  # (directions, B, H): the normed state each step received
        np.testing.assert_array_equal(got.h_in.sel(direction="forward").values, h0[0])
        np.testing.assert_array_equal(got.h_in.sel(direction="backward").values, h0[1])
        np.testing.assert_array_equal(got.c_in.sel(direction="forward").values,
                                      state[1].numpy()[0])
        ref = reference_stack(model.rnn, x_t.numpy(), h0=h0, c0=state[1].numpy())
        np.testing.assert_allclose(got.h.values[:, 0], ref[0]["h"][:, 0, 0], atol=1e-6)


def test_chain_names_are_checked():
    model = DecayRNN("all")
    with pytest.raises(seqacts.LayerSelectionError, match=r"chain: no layer matches 'cel'; "
                       r"available: cell"):
        seqacts.record(model, chain="cel")
    with pytest.raises(seqacts.OptionError, match=r"chain: 'cell': unknown mode 'step'.*'steps'"):
        seqacts.record(model, chain={"cell": "step"})
    two = nn.ModuleDict({"a": nn.GRUCell(2, 3), "b": nn.GRUCell(2, 3)})
    with pytest.raises(seqacts.LayerSelectionError, match=r"chain: b not recorded.*: a \("):
        seqacts.record(two, layers="a", chain="b")


# -- dual path: layers alternating between B x chunks and B x frames rows ----------------------


class DualPath(nn.Module):
    """asteroid DPRNN-like: ``blocks`` x (intra-chunk BiLSTM over B*chunks rows, inter-chunk
    GRU over B*chunk rows), with residual connections."""

    def __init__(self, blocks: int = 6, features: int = 3, chunk: int = 4) -> None:
        super().__init__()
        self.chunk = chunk
        self.intra = nn.ModuleList(nn.LSTM(features, 2, batch_first=True, bidirectional=True)
                                   for _ in range(blocks))
        self.inter = nn.ModuleList(nn.GRU(features, features, batch_first=True)
                                   for _ in range(blocks))
        self.proj = nn.ModuleList(nn.Linear(4, features) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, frames, f = x.shape
        n = frames // self.chunk
        z = x.reshape(b, n, self.chunk, f)
        for intra, inter, proj in zip(self.intra, self.inter, self.proj, strict=True):
            rows, _ = intra(z.reshape(b * n, self.chunk, f))
            z = z + proj(rows).reshape(b, n, self.chunk, f)
            across, _ = inter(z.transpose(1, 2).reshape(b * self.chunk, n, f))
            z = z + across.reshape(b, self.chunk, n, f).transpose(1, 2)
        return z.reshape(b, frames, f)


def test_dual_path_layers_share_two_row_sets():
    torch.manual_seed(3)
    model, x = DualPath().eval(), torch.randn(2, 24, 3)  # 6 chunks of 4: 12 and 8 rows
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = [m.register_forward_hook(
        lambda m, args, out, name=name: seen.__setitem__(name, (args[0].clone(), out[0].clone())))
        for name, m in model.named_modules() if isinstance(m, (nn.LSTM, nn.GRU))]
    try:
        with pytest.warns(seqacts.RecordingWarning,
                          match=r"intra.0.l0, intra.1.l0, intra.2.l0, intra.3.l0 \(and 2 more\) "
                                r"\[12\]; inter.0.l0, .* \(and 2 more\) \[8\]"):
            ds = seqacts.extract(model, x, internals=["c"])
    finally:
        for h in handles:
            h.remove()
    assert ds.sizes["sample"] == 12 + 8  # not 6 * (12 + 8)
    for name, (inp, out) in seen.items():
        got = ds.sel(layer=f"{name}.l0")
        rows = slice(0, 12) if name.startswith("intra") else slice(12, 20)
        other = slice(12, 20) if name.startswith("intra") else slice(0, 12)
        width = int(got.n_units)
        steps = out.shape[1]
        n_dir = int(got.n_directions)
        h = got.h.values[rows][:, :n_dir, :steps, :width]
        np.testing.assert_array_equal(h, out.reshape(out.shape[0], steps, n_dir, width)
                                      .permute(0, 2, 1, 3).numpy())
        assert np.isnan(got.h.values[other]).all() and (got.length.values[other] == 0).all()
        assert (got.length.values[rows] == steps).all()
        ref = reference_stack(model.get_submodule(name), inp.numpy())[0]
        np.testing.assert_allclose(h, ref["h"], atol=1e-5)
    np.testing.assert_array_equal(ds.call_row.sel(layer="inter.5.l0").values[12:], np.arange(8))


def test_declared_continuation_streams_to_netcdf_and_is_checked_on_resume(tmp_path):
    torch.manual_seed(4)
    model = DecayRNN("all").eval()
    batches = [torch.randn(2, T, 3) for _ in range(2)]
    path = tmp_path / "decay.nc"
    seqacts.extract_to_netcdf(model, batches, path, chain={"cell": "steps"}, progress=False)
    ds = seqacts.open_dataset(path)
    for i, x in enumerate(batches):
        one = quiet(seqacts.extract, model, x, chain="cell")
        got = ds.isel(sample=slice(2 * i, 2 * i + 2))
        for name in ("h", "h_in", "h_0", "h_n"):
            np.testing.assert_array_equal(got[name].values, one[name].values)
    assert ds.length.values[:, 0].tolist() == [T] * 4
    with pytest.raises(seqacts.StreamMismatchError, match="chain: file has \\['cell'\\]"):
        seqacts.extract_to_netcdf(model, batches, path, resume=True, progress=False)


class Step(nn.Module):
    def __init__(self, cell: nn.Linear) -> None:
        super().__init__()
        self.lin = cell

    def forward(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(torch.cat([x_t, h], 1)))


class DecayedPythonLoop(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = Step(nn.Linear(3 + 4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, out = x.new_zeros(x.shape[0], 4), []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h * 0.9)
            out.append(h)
        return torch.stack(out, 1)


def test_declared_continuation_of_a_python_cell():
    torch.manual_seed(5)
    model, x = DecayedPythonLoop().eval(), torch.randn(B, T, 3)
    steps = hooked_steps(model, x)
    with pytest.warns(seqacts.RecordingWarning, match=r"chain=\{'cell': 'steps'\}"):
        split = seqacts.extract(model, x, cells={"cell": "h"})
    assert split.sizes["sample"] == B * T
    ds = quiet(seqacts.extract, model, x, cells={"cell": "h"}, chain="cell")
    assert ds.sizes["sample"] == B and ds.length.values[:, 0].tolist() == [T] * B
    for t, (x_t, h_in, h_out) in enumerate(steps):
        got = ds.isel(layer=0, direction=0, time=t)
        np.testing.assert_array_equal(got.h.values, h_out.numpy())
        np.testing.assert_array_equal(got.h_in.values, h_in.numpy())
        w, b = (p.detach().double().numpy() for p in (model.cell.lin.weight, model.cell.lin.bias))
        ref = np.tanh(np.concatenate([x_t.double().numpy(), h_in.double().numpy()], 1) @ w.T + b)
        np.testing.assert_allclose(got.h.values, ref, atol=1e-6)
