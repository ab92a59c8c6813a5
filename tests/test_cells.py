"""Python cells (``cells=``, ``register_cell``): recorded from the state they return, exactly.

Each cell here is written in plain torch; the expected values come from a float64 step loop over
the cell's weights in numpy, written from the equations, never from the cell's forward.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module

import seqacts
from seqacts.capture import modules as module_kinds
from seqacts.errors import CellStateError, EditError, OptionError, RecordingWarning

N, T, N_IN, H = 3, 7, 4, 5


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


class LayerNormLSTMCell(nn.Module):
    """An LSTM cell with layer norm on the cell state before the output's tanh."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.ih, self.hh = nn.Linear(n_in, 4 * hidden), nn.Linear(hidden, 4 * hidden, bias=False)
        self.ln = nn.LayerNorm(hidden)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden)
            state = (zeros, zeros)
        h, c = state
        i, f, g, o = (self.ih(x) + self.hh(h)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(self.ln(c)), c


def layer_norm_reference(cell: LayerNormLSTMCell, x: np.ndarray) -> dict[str, np.ndarray]:
    w_ih, b_ih, w_hh = _np(cell.ih.weight), _np(cell.ih.bias), _np(cell.hh.weight)
    gamma, beta, eps = _np(cell.ln.weight), _np(cell.ln.bias), cell.ln.eps
    h, c = np.zeros((x.shape[0], H)), np.zeros((x.shape[0], H))
    hs, cs = [], []
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        mu, var = c.mean(1, keepdims=True), c.var(1, keepdims=True)
        h = sigmoid(o) * np.tanh((c - mu) / np.sqrt(var + eps) * gamma + beta)
        hs.append(h)
        cs.append(c)
    return {"h": np.stack(hs, 1), "c": np.stack(cs, 1)}


class DecayGRUCell(nn.Module):
    """A GRU-D-like cell: the input carries each feature's time since it was last observed,
    and the hidden state decays with it before the GRU update, inside the cell."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.decay = nn.Linear(n_in, hidden)
        self.ih, self.hh = nn.Linear(n_in, 3 * hidden), nn.Linear(hidden, 3 * hidden)

    def forward(self, inputs: torch.Tensor, hx: torch.Tensor) -> torch.Tensor:
        x, delta = inputs.chunk(2, 1)
        h = torch.exp(-torch.relu(self.decay(delta))) * hx
        r_x, z_x, n_x = self.ih(x).chunk(3, 1)
        r_h, z_h, n_h = self.hh(h).chunk(3, 1)
        r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
        n = torch.tanh(n_x + r * n_h)
        return (1 - z) * n + z * h


def decay_reference(cell: DecayGRUCell, inputs: np.ndarray, h0: np.ndarray) -> np.ndarray:
    w_d, b_d = _np(cell.decay.weight), _np(cell.decay.bias)
    w_ih, b_ih, w_hh, b_hh = (_np(cell.ih.weight), _np(cell.ih.bias), _np(cell.hh.weight),
                              _np(cell.hh.bias))
    h, hs = h0, []
    for t in range(inputs.shape[1]):
        x, delta = np.split(inputs[:, t], 2, axis=1)
        h = np.exp(-np.maximum(delta @ w_d.T + b_d, 0.0)) * h
        r_x, z_x, n_x = np.split(x @ w_ih.T + b_ih, 3, axis=1)
        r_h, z_h, n_h = np.split(h @ w_hh.T + b_hh, 3, axis=1)
        r, z = sigmoid(r_x + r_h), sigmoid(z_x + z_h)
        h = (1 - z) * np.tanh(n_x + r * n_h) + z * h
        hs.append(h)
    return np.stack(hs, 1)


class SLSTMCell(nn.Module):
    """An sLSTM-like cell (exponential gating, normalizer and stabilizer states), carrying
    ``(h, c)`` with ``c`` the concatenated cell, normalizer and stabilizer: 3 x hidden wide."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.w, self.r = nn.Linear(n_in, 4 * hidden), nn.Linear(hidden, 4 * hidden, bias=False)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h, cnm = state
        c, n, m = cnm.chunk(3, 1)
        z, i_t, f_t, o = (self.w(x) + self.r(h)).chunk(4, 1)
        m_new = torch.maximum(f_t + m, i_t)
        i, f = torch.exp(i_t - m_new), torch.exp(f_t + m - m_new)
        c = f * c + i * torch.tanh(z)
        n = f * n + i
        return torch.sigmoid(o) * c / n, torch.cat([c, n, m_new], 1)


def slstm_reference(cell: SLSTMCell, x: np.ndarray) -> dict[str, np.ndarray]:
    w, b, r = _np(cell.w.weight), _np(cell.w.bias), _np(cell.r.weight)
    h = np.zeros((x.shape[0], H))
    c, n, m = np.zeros_like(h), np.ones_like(h), np.zeros_like(h)
    hs, cs = [], []
    for t in range(x.shape[1]):
        z, i_t, f_t, o = np.split(x[:, t] @ w.T + b + h @ r.T, 4, axis=1)
        m_new = np.maximum(f_t + m, i_t)
        i, f = np.exp(i_t - m_new), np.exp(f_t + m - m_new)
        c, n, m = f * c + i * np.tanh(z), f * n + i, m_new
        h = sigmoid(o) * c / n
        hs.append(h)
        cs.append(np.concatenate([c, n, m], 1))
    return {"h": np.stack(hs, 1), "c": np.stack(cs, 1)}


class Loop(nn.Module):
    """A sequence model stepping its cell in Python, a head on the states."""

    def __init__(self, cell: nn.Module, state: str = "h,c", start: str = "none") -> None:
        super().__init__()
        self.cell, self.head = cell, nn.Linear(H, 2)
        self.state, self.start = state, start

    def initial(self, x: torch.Tensor) -> object:
        if self.start == "none":
            return None
        zeros = x.new_zeros(x.shape[0], H)
        if isinstance(self.cell, SLSTMCell):
            return zeros, torch.cat([zeros, torch.ones_like(zeros), zeros], 1)
        return (zeros, zeros) if self.state == "h,c" else zeros

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state, hs = self.initial(x), []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            hs.append(state[0] if isinstance(state, tuple) else state)
        return self.head(torch.stack(hs, 1))


def _states(model: Loop, x: torch.Tensor) -> torch.Tensor:
    """The states the model's own loop computes (no recording)."""
    seen: list[torch.Tensor] = []
    handle = model.cell.register_forward_hook(
        lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    try:
        model(x)
    finally:
        handle.remove()
    return torch.stack(seen, 1)


def _no_seqacts_hooks() -> bool:
    names = ("_global_forward_hooks", "_global_forward_pre_hooks")
    return all(not getattr(torch_module, n) for n in names) and (
        not hasattr(torch._VF.lstm, "__wrapped__"))


@pytest.fixture
def quiet() -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordingWarning)
        yield


def test_layer_norm_lstm_cell_recorded_exactly(quiet: object) -> None:
    torch.manual_seed(0)
    model = Loop(LayerNormLSTMCell(N_IN, H)).double().eval()
    x = torch.randn(N, T, N_IN, dtype=torch.float64)
    ds = seqacts.extract(model, x, cells={"cell": "h,c"}, internals=True)
    ref = layer_norm_reference(model.cell, x.numpy())
    assert ds.sizes["sample"] == N and ds.sizes["time"] == T  # one sample per series
    assert list(ds["kind"].values) == ["cell(h,c)"]
    one = ds.sel(layer="cell", direction="forward")
    np.testing.assert_allclose(one["h"].values, ref["h"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(one["c"].values, ref["c"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(one["h_0"].values, 0.0)
    np.testing.assert_array_equal(one["c_0"].values, 0.0)
    np.testing.assert_array_equal(one["h_n"].values, one["h"].values[:, -1])
    np.testing.assert_array_equal(one["c_n"].values, one["c"].values[:, -1])
    assert (ds["length"].values == T).all()
    assert set(ds.data_vars) == {"h", "h_0", "h_n", "c_0", "c_n", "c"}  # no gates made up


@pytest.mark.parametrize("start", ["none", "zeros"])
def test_decaying_gru_cell_recorded_exactly(quiet: object, start: str) -> None:
    torch.manual_seed(1)
    model = Loop(DecayGRUCell(N_IN, H), state="h", start="zeros").double().eval()
    x = torch.cat([torch.randn(N, T, N_IN), torch.rand(N, T, N_IN) * 3], 2).double()
    ds = seqacts.extract(model, x, cells={"cell": "h"})
    ref = decay_reference(model.cell, x.numpy(), np.zeros((N, H)))
    assert ds.sizes["sample"] == N and list(ds["kind"].values) == ["cell(h)"]
    np.testing.assert_allclose(ds["h"].values[:, 0, 0], ref, rtol=0, atol=1e-12)
    assert "c_0" not in ds and "c" not in ds


def test_slstm_like_cell_recorded_exactly_with_a_wider_cell_state(quiet: object) -> None:
    torch.manual_seed(2)
    model = Loop(SLSTMCell(N_IN, H), start="zeros").double().eval()
    x = torch.randn(N, T, N_IN, dtype=torch.float64)
    ds = seqacts.extract(model, x, cells={"cell": "h,c"}, internals=["c"])
    ref = slstm_reference(model.cell, x.numpy())
    assert int(ds["n_units"][0]) == H and int(ds["n_cell_units"][0]) == 3 * H
    np.testing.assert_allclose(ds["h"].values[:, 0, 0, :, :H], ref["h"], rtol=0, atol=1e-12)
    assert np.isnan(ds["h"].values[:, 0, 0, :, H:]).all()
    np.testing.assert_allclose(ds["c"].values[:, 0, 0], ref["c"], rtol=0, atol=1e-12)
    assert ds.seqacts.layer("cell").sizes["unit"] == 3 * H


@pytest.mark.parametrize("cell, state", [(LayerNormLSTMCell(N_IN, H), "h,c"),
                                         (SLSTMCell(N_IN, H), "h,c")])
def test_outputs_and_states_bit_identical_with_and_without_recording(
        cell: nn.Module, state: str) -> None:
    torch.manual_seed(3)
    model = Loop(cell, start="zeros").eval()
    x = torch.randn(N, T, N_IN)
    with torch.no_grad():
        plain = model(x)
        states = _states(model, x)
        with seqacts.record(model, cells={"cell": state}) as rec:
            recorded = model(x)
    assert torch.equal(plain, recorded)
    ds = rec.to_dataset()
    assert np.array_equal(ds["h"].values[:, 0, 0, :, :H], states.numpy())
    assert _no_seqacts_hooks()


def test_register_cell_records_a_class_in_every_model() -> None:
    class RegisteredCell(LayerNormLSTMCell):
        pass

    try:
        assert seqacts.register_cell(RegisteredCell, state="h,c") == "cell(h,c)"
        model = Loop(RegisteredCell(N_IN, H)).double()
        assert seqacts.layers(model) == ["cell"]
        x = torch.randn(N, T, N_IN, dtype=torch.float64)
        ds = seqacts.extract(model, x)
        ref = layer_norm_reference(model.cell, x.numpy())
        np.testing.assert_allclose(ds["h"].values[:, 0, 0], ref["h"], rtol=0, atol=1e-12)
        with pytest.raises(EditError, match="Python cell"):
            seqacts.extract(model, x, edits=[seqacts.ablate("cell", units=[0])])
    finally:
        module_kinds.unregister_module_kinds(RegisteredCell)


def test_register_cell_with_own_kind_label_and_bad_arguments() -> None:
    class Labelled(DecayGRUCell):
        pass

    try:
        assert seqacts.register_cell(Labelled, state="h", kind="DecayGRU") == "DecayGRU"
        model = Loop(Labelled(N_IN, H), state="h", start="zeros")
        x = torch.rand(N, T, 2 * N_IN)
        assert list(seqacts.extract(model, x)["kind"].values) == ["DecayGRU"]
    finally:
        module_kinds.unregister_module_kinds(Labelled)
    with pytest.raises(OptionError, match="h,c"):
        seqacts.register_cell(Labelled, state="h,c,n")
    with pytest.raises(TypeError, match="nn.Module subclass"):
        seqacts.register_cell(Labelled(N_IN, H))  # type: ignore[arg-type]
    with pytest.raises(seqacts.KindError, match="already registered"):
        seqacts.register_cell(Labelled, state="h", kind="LSTM")


def test_wrong_state_is_a_clear_error_and_removes_every_hook() -> None:
    model = Loop(LayerNormLSTMCell(N_IN, H), start="zeros")
    x = torch.randn(N, T, N_IN)
    with pytest.raises(CellStateError) as err:
        seqacts.extract(model, x, cells={"cell": "h"})
    message = str(err.value)
    assert "cell (LayerNormLSTMCell)" in message and "a tuple of 2" in message
    assert "(batch, hidden)" in message and "\"h\"" in message
    assert _no_seqacts_hooks()
    assert torch.equal(model(x), model(x))  # the model runs normally afterwards


def test_received_state_of_another_shape_is_refused() -> None:
    class Shrinking(nn.Module):
        def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            return h[:, :2]

    with pytest.raises(CellStateError, match="received a tensor of shape"):
        seqacts.extract(Loop(Shrinking(), state="h", start="zeros"), torch.randn(N, T, N_IN),
                        cells={"cell": "h"})
    assert _no_seqacts_hooks()


def test_state_passed_by_keyword_chains(quiet: object) -> None:
    class KeywordLoop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = DecayGRUCell(N_IN, H)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x.new_zeros(x.shape[0], H)
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], hx=h)
            return h

    torch.manual_seed(4)
    model = KeywordLoop().double()
    x = torch.rand(N, T, 2 * N_IN, dtype=torch.float64)
    ds = seqacts.extract(model, x, cells={"cell": "h"})
    assert ds.sizes["sample"] == N and ds.sizes["time"] == T
    np.testing.assert_allclose(ds["h"].values[:, 0, 0],
                               decay_reference(model.cell, x.numpy(), np.zeros((N, H))),
                               rtol=0, atol=1e-12)


def test_internals_of_python_cells_are_their_cell_state_only() -> None:
    model = Loop(DecayGRUCell(N_IN, H), state="h", start="zeros")
    x = torch.rand(N, T, 2 * N_IN)
    ds = seqacts.extract(model, x, cells={"cell": "h"}, internals=True)
    assert set(ds.data_vars) == {"h", "h_0", "h_n"} and ds.attrs["internals"] == ""
    with pytest.raises(OptionError, match="forget_gate.*does not exist"):
        seqacts.extract(model, x, cells={"cell": "h"}, internals=["forget_gate"])


def test_cells_option_is_checked() -> None:
    model = Loop(DecayGRUCell(N_IN, H), state="h", start="zeros")
    x = torch.rand(N, T, 2 * N_IN)
    with pytest.raises(OptionError, match="h,c"):
        seqacts.extract(model, x, cells={"cell": "c"})
    with pytest.raises(seqacts.LayerSelectionError, match="cells: no module matches 'decoder'"):
        seqacts.extract(model, x, cells={"decoder": "h"})
    with pytest.raises(TypeError, match="cells: expected a dict"):
        seqacts.extract(model, x, cells=["cell"])  # type: ignore[arg-type]


class PeepholeLSTMCell(nn.LSTMCell):
    """A subclass of nn.LSTMCell whose forward never calls the kernel (pypots VaDER's kind)."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__(n_in, hidden)
        self.peep = nn.Parameter(torch.randn(3, hidden) * 0.1)

    def forward(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = hx if hx is not None else (x.new_zeros(x.shape[0], self.hidden_size),) * 2
        gates = x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh
        i, f, g, o = gates.chunk(4, 1)
        i, f = torch.sigmoid(i + self.peep[0] * c), torch.sigmoid(f + self.peep[1] * c)
        c = f * c + i * torch.tanh(g)
        return torch.sigmoid(o + self.peep[2] * c) * torch.tanh(c), c


def peephole_reference(cell: PeepholeLSTMCell, x: np.ndarray) -> np.ndarray:
    w_ih, w_hh = _np(cell.weight_ih), _np(cell.weight_hh)
    b, p = _np(cell.bias_ih) + _np(cell.bias_hh), _np(cell.peep)
    h, c, hs = np.zeros((x.shape[0], H)), np.zeros((x.shape[0], H)), []
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ w_ih.T + h @ w_hh.T + b, 4, axis=1)
        i, f = sigmoid(i + p[0] * c), sigmoid(f + p[1] * c)
        c = f * c + i * np.tanh(g)
        h = sigmoid(o + p[2] * c) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1)


class Encoder(nn.Module):
    """A real nn.LSTM next to a peephole cell loop over its output."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(N_IN, N_IN, batch_first=True)
        self.cell = PeepholeLSTMCell(N_IN, H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        state = None
        for t in range(out.shape[1]):
            state = self.cell(out[:, t], state)
        return state[0]


def test_cell_subclass_that_bypasses_the_kernel_is_recorded_from_its_state() -> None:
    torch.manual_seed(5)
    model = Encoder().double().eval()
    x = torch.randn(N, T, N_IN, dtype=torch.float64)
    with pytest.warns(RecordingWarning) as caught:
        ds = seqacts.extract(model, x)
    messages = [str(w.message) for w in caught]
    told = [m for m in messages if "cell (PeepholeLSTMCell" in m]
    assert len(told) == 1 and "cells={'cell': 'h,c'}" in told[0]
    assert not any("caching" in m or "TorchScript" in m for m in messages)
    assert list(ds["kind"].values) == ["LSTM", "cell(h,c)"]
    rnn_out, _ = model.rnn(x)
    ref = peephole_reference(model.cell, rnn_out.detach().numpy())
    np.testing.assert_allclose(ds["h"].sel(layer="cell").values[:, 0], ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ds["h"].sel(layer="rnn.l0").values[:, 0, :, :N_IN],
                                  rnn_out.detach().numpy())


def test_cell_subclass_named_in_cells_is_recorded_without_a_warning(quiet: object) -> None:
    torch.manual_seed(5)
    model = Encoder().double().eval()
    x = torch.randn(N, T, N_IN, dtype=torch.float64)
    ds = seqacts.extract(model, x, cells={"cell": "h,c"}, layers=["rnn.l0"])
    assert list(ds["layer"].values) == ["rnn.l0", "cell"]


def test_stack_subclass_that_bypasses_the_kernel_is_named_with_the_fix() -> None:
    class OwnLSTM(nn.LSTM):
        def forward(self, x: torch.Tensor, hx: object = None) -> object:  # type: ignore[override]
            return torch.tanh(x @ self.weight_ih_l0[: self.hidden_size].T), None

    model = OwnLSTM(N_IN, H, batch_first=True)
    with pytest.raises(seqacts.RecordingError) as err:
        seqacts.extract(model, torch.randn(N, T, N_IN))
    message = str(err.value)
    assert "model (OwnLSTM) returned without running torch's recurrent kernel" in message
    assert "modules=['model']" in message and "caching" not in message


class PythonRecurrence(nn.Module):
    """A recurrence without any torch recurrent module (xlstm's blocks, a research cell)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(N_IN, N_IN)
        self.cell = SLSTMCell(N_IN, H)
        self.head = nn.Linear(H, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed(x)
        zeros = x.new_zeros(x.shape[0], H)
        state = (zeros, torch.cat([zeros, torch.ones_like(zeros), zeros], 1))
        for t in range(x.shape[1]):
            state = self.cell(e[:, t], state)
        return self.head(state[0])


def test_modules_on_a_model_without_a_recurrent_module_records_the_outputs() -> None:
    torch.manual_seed(6)
    model = PythonRecurrence()
    x = torch.randn(N, T, N_IN)
    with pytest.warns(RecordingWarning, match="no recurrent layer.*cells="):
        ds = seqacts.extract(model, x, modules=["embed", "head"])
    assert "layer" not in ds.dims and "h" not in ds
    with torch.no_grad():
        np.testing.assert_array_equal(ds["embed"].values, model.embed(x).numpy())
        np.testing.assert_array_equal(ds["head"].values, model(x).numpy())
    with pytest.raises(seqacts.NoRecurrentModuleError, match="cells="):
        seqacts.extract(model, x)


def test_cells_alone_record_a_model_without_a_recurrent_module(quiet: object) -> None:
    torch.manual_seed(7)
    model = PythonRecurrence().double()
    x = torch.randn(N, T, N_IN, dtype=torch.float64)
    ds = seqacts.extract(model, x, cells={"cell": "h,c"}, modules=["head"])
    with torch.no_grad():
        ref = slstm_reference(model.cell, model.embed(x).numpy())
    np.testing.assert_allclose(ds["h"].values[:, 0, 0, :, :H], ref["h"], rtol=0, atol=1e-12)
    assert ds["head"].shape == (N, 1)


def test_root_model_that_is_a_python_cell_chains_the_callers_loop(quiet: object) -> None:
    torch.manual_seed(8)
    cell = LayerNormLSTMCell(N_IN, H).double()
    x = torch.randn(N, T, N_IN, dtype=torch.float64)
    with torch.no_grad(), seqacts.record(cell, cells={"model": "h,c"}) as rec:
        state = None
        for t in range(T):
            state = cell(x[:, t], state)
    ds = rec.to_dataset()
    assert list(ds["layer"].values) == ["cell"] and ds.sizes["time"] == T
    np.testing.assert_allclose(ds["h"].values[:, 0, 0], layer_norm_reference(cell, x.numpy())["h"],
                               rtol=0, atol=1e-12)


def test_an_error_inside_the_block_leaves_the_recorder_usable(quiet: object) -> None:
    torch.manual_seed(9)
    model = Loop(LayerNormLSTMCell(N_IN, H)).double()
    x = torch.randn(N, T, N_IN, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when an always_call hook fails
        with seqacts.record(model, cells={"cell": "h"}) as rec:
            with pytest.raises(CellStateError):
                model(x)
    with seqacts.record(model, cells={"cell": "h,c"}) as rec:
        with pytest.raises(RuntimeError):
            model(torch.randn(N, T, N_IN + 1, dtype=torch.float64))
        model(x)  # a later forward is its own group, recorded whole
    ds = rec.to_dataset()
    assert ds.sizes["sample"] == N and ds.sizes["time"] == T
