"""Patterns met in other people's recurrent models, reproduced in plain torch.

Each test mimics how a library drives its ``nn.LSTM/GRU/RNN`` or cells (named in the test's
comment) and checks what seqacts records against the values the module actually returned
(captured with plain forward hooks or taken from the outputs) and, for internals, against the
independent float64 reference in ``tests/reference.py``. The libraries themselves are not
imported; the trials that found these patterns ran them in a separate environment.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.modules.module as torch_module
from reference import reference_cell, reference_stack
from torch import nn
from torch.nn.utils import rnn as rnn_utils

import seqacts
from seqacts.schema import CELL_KERNELS, STACK_KERNELS

KERNELS = (*STACK_KERNELS.values(), *CELL_KERNELS.values())


def model_state(model: nn.Module) -> dict[str, object]:
    """Hooks, modes and grad flags of every submodule, plus torch's global hook registries."""
    state: dict[str, object] = {}
    for name, mod in model.named_modules():
        state[f"{name}.hooks"] = (
            len(mod._forward_hooks),
            len(mod._forward_pre_hooks),
            len(mod._backward_hooks),
            len(mod._backward_pre_hooks),
        )
        state[f"{name}.training"] = mod.training
    for name, p in model.named_parameters():
        state[f"{name}.requires_grad"] = p.requires_grad
    state["global"] = (
        len(torch_module._global_forward_hooks),
        len(torch_module._global_forward_pre_hooks),
        len(torch_module._global_backward_hooks),
    )
    state["kernels"] = {k: getattr(torch._VF, k) for k in KERNELS}
    return state


def outputs_hook(store: list[tuple]):  # noqa: ANN201
    """A forward hook keeping copies of (args, output) of every call."""

    def keep(module, args, out):  # noqa: ANN001, ANN202
        def copy(v):  # noqa: ANN001, ANN202
            if isinstance(v, torch.Tensor):
                return v.detach().clone()
            if isinstance(v, rnn_utils.PackedSequence):
                return rnn_utils.PackedSequence(
                    v.data.detach().clone(), v.batch_sizes, v.sorted_indices, v.unsorted_indices
                )
            if isinstance(v, tuple):
                return tuple(copy(t) for t in v)
            return v

        store.append((copy(args), copy(out)))

    return keep


def told(rec: seqacts.Recorder, match: str):  # noqa: ANN201
    """``rec``'s dataset, checking that building it warns once, with a message matching ``match``."""
    with pytest.warns(seqacts.RecordingWarning, match=match) as caught:
        ds = rec.to_dataset()
    assert sum(issubclass(w.category, seqacts.RecordingWarning) for w in caught) == 1
    return ds


# --- darts RNNModel.predict: the state returned by one model(...) call is passed to the next ---


class StatefulForecaster(nn.Module):
    """darts ``_RNNModule``: ``out, state = rnn(x, state)``, the state handed back by predict."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 5, num_layers=2, batch_first=True)
        self.V = nn.Linear(5, 1)

    def forward(self, x, state=None):  # noqa: ANN001, ANN201
        out, state = self.rnn(x) if state is None else self.rnn(x, state)
        return self.V(out), state


def test_darts_predict_loop_records_every_step_once() -> None:
    torch.manual_seed(0)
    model = StatefulForecaster().eval()
    x = torch.randn(2, 8, 3)
    steps = [torch.randn(2, 1, 3) for _ in range(3)]
    calls: list[tuple] = []
    before = model_state(model)
    handle = model.rnn.register_forward_hook(outputs_hook(calls))
    with torch.no_grad(), seqacts.record(model, internals=True) as rec:
        y, state = model(x)
        for s in steps:
            y, state = model(s, state)
    handle.remove()
    assert model_state(model) == before
    # chains never cross model(...) calls (README): 4 calls of 2 rows -> 8 samples, and the
    # calls that started from the state an earlier model(...) call returned are named
    ds = told(
        rec,
        r"rnn.l0 calls 1, 2, 3; rnn.l1 calls 1, 2, 3: the initial state is bitwise the "
        r"state that the layer returned in an earlier call of the model, but chains never "
        r"cross calls of the model .*one model\(\.\.\.\) call \(e.g. a wrapper module",
    )
    assert ds.sizes["sample"] == 8
    top = ds.h.sel(layer="rnn.l1", direction="forward").values
    for i, (args, (out, (_h_n, c_n))) in enumerate(calls):
        rows = slice(2 * i, 2 * i + 2)
        n_steps = out.shape[1]
        np.testing.assert_array_equal(top[rows, :n_steps], out.numpy())
        assert np.isnan(top[rows, n_steps:]).all()
        np.testing.assert_array_equal(ds.c_n.sel(layer="rnn.l1").values[rows, 0], c_n[1].numpy())
        # the state passed in is recorded as this call's initial state
        hx = args[1] if len(args) > 1 else None
        ref = reference_stack(
            model.rnn,
            args[0].double().numpy(),
            h0=None if hx is None else hx[0].double().numpy(),
            c0=None if hx is None else hx[1].double().numpy(),
        )
        for k in range(2):
            got_c = ds.c.sel(layer=f"rnn.l{k}").values[rows, :, :n_steps]
            np.testing.assert_allclose(got_c, ref[k]["c"], rtol=0, atol=1e-5)
            got_h0 = ds.h_0.sel(layer=f"rnn.l{k}").values[rows]
            np.testing.assert_allclose(got_h0, ref[k]["h_0"], rtol=0, atol=0)


class PredictLoop(nn.Module):
    """The fix the warning suggests: darts' predict loop run inside one root call."""

    def __init__(self, forecaster: nn.Module) -> None:
        super().__init__()
        self.forecaster = forecaster

    def forward(self, x, steps):  # noqa: ANN001, ANN201
        y, state = self.forecaster(x)
        outs = [y]
        for s in steps:
            y, state = self.forecaster(s, state)
            outs.append(y)
        return torch.cat(outs, 1)


def test_darts_predict_loop_inside_one_root_call_is_one_sample_per_series() -> None:
    torch.manual_seed(0)
    inner = StatefulForecaster().eval()
    x = torch.randn(2, 8, 3)
    steps = [torch.randn(2, 1, 3) for _ in range(3)]
    calls: list[tuple] = []
    handle = inner.rnn.register_forward_hook(outputs_hook(calls))
    with torch.no_grad(), seqacts.record(PredictLoop(inner)) as rec:
        rec.model(x, steps)
    handle.remove()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = rec.to_dataset()
    assert ds.sizes["sample"] == 2
    np.testing.assert_array_equal(ds.length.sel(layer="forecaster.rnn.l1").values, [11, 11])
    top = ds.h.sel(layer="forecaster.rnn.l1", direction="forward").values
    returned = np.concatenate([out.numpy() for _, (out, _) in calls], 1)
    np.testing.assert_array_equal(top[:, :11, :5], returned)


# --- neuralforecast LSTM(recurrent=True): proj_size stack, state kept on a module attribute ---


class ProjectedRecurrent(nn.Module):
    """neuralforecast ``LSTM(recurrent=True)``: ``proj_size`` output, ``self.rnn_state`` kept."""

    def __init__(self) -> None:
        super().__init__()
        self.hist_encoder = nn.LSTM(1, 6, num_layers=2, batch_first=True, proj_size=1)
        self.maintain_state = False
        self.rnn_state = None

    def forward(self, x):  # noqa: ANN001, ANN201
        state = self.rnn_state if self.maintain_state else None
        out, state = self.hist_encoder(x, state)
        if self.maintain_state:
            self.rnn_state = state
        return out


def test_neuralforecast_projected_state_on_attribute_matches_reference() -> None:
    torch.manual_seed(0)
    model = ProjectedRecurrent().eval()
    x = torch.randn(3, 7, 1)
    calls: list[tuple] = []
    handle = model.hist_encoder.register_forward_hook(outputs_hook(calls))
    with torch.no_grad():
        model.maintain_state = True
        expected = [model(x)] + [model(x[:, -1:] * 0.5) for _ in range(2)]
        model.rnn_state = None
        calls.clear()
        with seqacts.record(model, internals=True) as rec:
            got = [model(x)] + [model(x[:, -1:] * 0.5) for _ in range(2)]
    handle.remove()
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)
    ds = told(
        rec,
        r"hist_encoder.l0 calls 1, 2; hist_encoder.l1 calls 1, 2: the initial state is "
        r"bitwise the state that the layer returned in an earlier call of the model",
    )
    assert ds.sizes["sample"] == 9
    assert ds.n_units.sel(layer="hist_encoder.l1").item() == 1
    assert ds.n_cell_units.sel(layer="hist_encoder.l1").item() == 6
    for i, (args, (out, _)) in enumerate(calls):
        rows = slice(3 * i, 3 * i + 3)
        hx = args[1]
        ref = reference_stack(
            model.hist_encoder,
            args[0].double().numpy(),
            h0=None if hx is None else hx[0].double().numpy(),
            c0=None if hx is None else hx[1].double().numpy(),
        )
        n_steps = out.shape[1]
        top = ds.h.sel(layer="hist_encoder.l1", direction="forward").values[rows, :n_steps, :1]
        np.testing.assert_array_equal(top, out.numpy())
        for k in range(2):
            for name in ("h", "c", "forget_gate", "output_gate"):
                width = ref[k][name].shape[-1]
                value = ds[name].sel(layer=f"hist_encoder.l{k}").values[rows, :, :n_steps, :width]
                np.testing.assert_allclose(value, ref[k][name], rtol=0, atol=1e-5)


# --- neuralforecast DilatedRNN: each dilation's layer runs over B * rate interleaved rows ---


class Dilated(nn.Module):
    """neuralforecast ``DRNN``: one ``nn.GRU`` per dilation, rows regrouped between them."""

    def __init__(self, dilations=(1, 2, 4)) -> None:  # noqa: ANN001
        super().__init__()
        self.dilations = dilations
        self.cells = nn.Sequential(*[nn.GRU(3 if i == 0 else 4, 4) for i in range(len(dilations))])

    def forward(self, x):  # noqa: ANN001, ANN201
        inputs = x.transpose(0, 1)  # time-major
        for cell, rate in zip(self.cells, self.dilations, strict=True):
            steps = inputs.shape[0]
            dilated = torch.cat([inputs[j::rate] for j in range(rate)], 1)
            out, _ = cell(dilated)
            batch = out.shape[1] // rate
            blocks = [out[:, i * batch : (i + 1) * batch] for i in range(rate)]
            inputs = torch.stack(blocks).transpose(1, 0).reshape(steps, batch, out.shape[2])
        out = inputs.transpose(0, 1)
        out += x.sum(-1, keepdim=True)  # the residual neuralforecast adds in place
        return out


def test_neuralforecast_dilated_rows_recorded_and_warned() -> None:
    torch.manual_seed(0)
    model = Dilated().eval()
    x = torch.randn(2, 8, 3)
    calls: dict[int, list[tuple]] = {}
    handles = [
        cell.register_forward_hook(outputs_hook(calls.setdefault(i, [])))
        for i, cell in enumerate(model.cells)
    ]
    with torch.no_grad():
        expected = model(x)
        for v in calls.values():
            v.clear()
        with seqacts.record(model) as rec:
            got = model(x)
    for h in handles:
        h.remove()
    assert torch.equal(expected, got)
    with pytest.warns(seqacts.RecordingWarning, match="different batches"):
        ds = rec.to_dataset()
    for i, rate in enumerate(model.dilations):
        ((_, (out, _)),) = calls[i]
        label = f"cells.{i}.l0"
        rows = np.flatnonzero(ds.length.sel(layer=label).values > 0)
        assert len(rows) == 2 * rate
        recorded = ds.h.sel(layer=label, direction="forward").values[rows, : 8 // rate]
        # recorded before the caller's in-place residual add changed the returned tensor
        np.testing.assert_array_equal(recorded, out.transpose(0, 1).numpy())


# --- speechbrain AttentionalRNNDecoder: LSTMCell stack whose states are re-stacked each step ---


class SpeechbrainLike(nn.Module):
    """speechbrain ``LSTM(lengths=...)`` encoder (packed, unsorted, bidirectional) and
    ``LSTMCell`` decoder: per step ``h, c = cells[i](x, (hx[0][i], hx[1][i]))`` with
    ``hx = (torch.stack(hs), torch.stack(cs))``, dropout between the cells."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)
        self.cells = nn.ModuleList([nn.LSTMCell(8 + 2, 5), nn.LSTMCell(5, 5)])
        self.drop = nn.Dropout(0.3)
        self.proj = nn.Linear(5, 2)

    def forward(self, x, rel_lengths, y):  # noqa: ANN001, ANN201
        lengths = (rel_lengths * x.shape[1]).long()
        packed = rnn_utils.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        enc, _ = self.enc(packed)
        enc, _ = rnn_utils.pad_packed_sequence(enc, batch_first=True)
        context = enc.sum(1) / lengths[:, None]
        hx = (y.new_zeros(2, y.shape[0], 5), y.new_zeros(2, y.shape[0], 5))
        outs = []
        for t in range(y.shape[1]):
            inp = torch.cat([y[:, t], context], -1)
            hs, cs = [], []
            for i, cell in enumerate(self.cells):
                h, c = cell(inp, (hx[0][i], hx[1][i]))
                hs.append(h)
                cs.append(c)
                inp = self.drop(h)
            hx = (torch.stack(hs), torch.stack(cs))
            outs.append(self.proj(h))
        return torch.stack(outs, 1)


@pytest.mark.parametrize("training", [False, True])
def test_speechbrain_encoder_decoder_chains_and_matches(training: bool) -> None:
    torch.manual_seed(0)
    model = SpeechbrainLike().train(training)
    x, y = torch.randn(4, 10, 3), torch.randn(4, 6, 2)
    rel = torch.tensor([1.0, 0.6, 0.8, 0.4])
    calls: dict[int, list[tuple]] = {0: [], 1: []}
    before = model_state(model)
    handles = [
        cell.register_forward_hook(outputs_hook(calls[i])) for i, cell in enumerate(model.cells)
    ]
    enc_calls: list[tuple] = []
    handles.append(model.enc.register_forward_hook(outputs_hook(enc_calls)))
    torch.manual_seed(1)
    expected = model(x, rel, y)
    expected.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    for v in (*calls.values(), enc_calls):
        v.clear()
    torch.manual_seed(1)
    with seqacts.record(model, internals=True) as rec:
        got = model(x, rel, y)
        got.sum().backward()
    for h in handles:
        h.remove()
    assert model_state(model) == before
    assert torch.equal(expected, got)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
    ds = rec.to_dataset()
    assert ds.sizes["sample"] == 4
    np.testing.assert_array_equal(ds.length.sel(layer="enc.l0").values, [10, 6, 8, 4])
    np.testing.assert_array_equal(ds.length.sel(layer="cells.1").values, [6] * 4)
    ((_, (enc_out, (h_n, _))),) = enc_calls
    padded, _ = rnn_utils.pad_packed_sequence(enc_out, batch_first=True)
    top = ds.h.sel(layer="enc.l1").values  # (sample, direction, time, unit)
    both = np.concatenate([top[:, 0, : padded.shape[1], :4], top[:, 1, : padded.shape[1], :4]], -1)
    np.testing.assert_array_equal(np.nan_to_num(both), padded.numpy())
    np.testing.assert_array_equal(ds.h_n.sel(layer="enc.l1").values[:, 1, :4], h_n[3].numpy())
    for i, cell in enumerate(model.cells):
        for t, ((inp, (h0, c0)), (h, _c)) in enumerate(calls[i]):
            label = f"cells.{i}"
            np.testing.assert_array_equal(ds.h.sel(layer=label).values[:, 0, t, :5], h.numpy())
            ref = reference_cell(
                cell, inp.double().numpy(), h0.double().numpy(), c0.double().numpy()
            )
            for name in ("c", "input_gate", "forget_gate", "cell_gate", "output_gate"):
                value = ds[name].sel(layer=label).values[:, 0, t, :5]
                np.testing.assert_allclose(value, ref[name], rtol=0, atol=1e-5)


class ReluCellLoop(nn.Module):
    """speechbrain ``RNNCell`` wrapper (relu) whose state ends up all zeros, re-stacked."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.RNNCell(2, 3, nonlinearity="relu")

    def forward(self, x):  # noqa: ANN001, ANN201
        hx = x.new_zeros(1, x.shape[0], 3)
        outs = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], hx[0])
            hx = torch.stack([h])
            outs.append(h)
        return torch.stack(outs, 1)


def test_speechbrain_all_zero_relu_state_copy_starts_new_samples() -> None:
    # An all-zero state is every fresh start's state: a copy of it (not the returned tensor
    # or a view) cannot be told from a new start, so each step becomes a sample of its own
    # (README, "How calls become samples"). Every step is still recorded exactly once.
    torch.manual_seed(0)
    model = ReluCellLoop().eval()
    with torch.no_grad():
        model.cell.bias_ih.fill_(-5.0)
    x = torch.randn(2, 5, 2)
    with torch.no_grad(), seqacts.record(model) as rec:
        out = model(x)
    ds = told(
        rec,
        r"cell calls 1, 2, 3, 4: the initial state is all zeros, equal to the all-zero "
        r"state an earlier call returned but not the same tensor .*all-zero states .* are "
        r"linked only when passed on as the same tensor .*recorded as separate samples",
    )
    assert ds.sizes["sample"] == 10
    np.testing.assert_array_equal(ds.length.sel(layer="cell").values, [1] * 10)
    h = ds.h.sel(layer="cell", direction="forward").values[:, 0, :3]
    np.testing.assert_array_equal(h, out.transpose(0, 1).reshape(10, 3).numpy())


# --- tsai LSTMPlus/GRUPlus: one nn.LSTM per layer in a Sequential, output picked by a module ---


class PickOutput(nn.Module):
    """tsai ``LSTMOutput``: returns ``x[0]`` of the recurrent module's tuple."""

    def forward(self, x):  # noqa: ANN001, ANN201
        return x[0]


def test_tsai_sequential_layers_training_step_identical() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.LSTM(3, 6, batch_first=True, bidirectional=True),
        PickOutput(),
        nn.Dropout(0.3),
        nn.LSTM(12, 5, batch_first=True, bidirectional=True),
        PickOutput(),
    ).train()
    x = torch.randn(4, 9, 3)
    calls: list[tuple] = []
    before = model_state(model)
    handle = model[3].register_forward_hook(outputs_hook(calls))
    torch.manual_seed(2)
    expected = model(x)
    expected.pow(2).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    calls.clear()
    torch.manual_seed(2)
    with seqacts.record(model, internals=["c"]) as rec:
        got = model(x)
        got.pow(2).sum().backward()
    handle.remove()
    assert model_state(model) == before
    assert torch.equal(expected, got)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))
    ds = rec.to_dataset()
    assert seqacts.layers(model) == ["0.l0", "3.l0"]
    ((args, (out, (h_n, c_n))),) = calls
    top = ds.h.sel(layer="3.l0").values
    np.testing.assert_array_equal(
        np.concatenate([top[:, 0, :, :5], top[:, 1, :, :5]], -1), out.numpy()
    )
    # the second layer's input is the dropped-out first layer output the model used
    ref = reference_stack(model[3], args[0].double().numpy())
    np.testing.assert_allclose(
        ds.c.sel(layer="3.l0").values[..., :5], ref[0]["c"], rtol=0, atol=1e-5
    )
    np.testing.assert_array_equal(
        ds.c_n.sel(layer="3.l0").values[:, :, :5], c_n.transpose(0, 1).numpy()
    )


# --- pytorch-forecasting DeepAR/RecurrentNetwork: packed encoder, decoder from its state ---


class PackedEncoderDecoder(nn.Module):
    """pytorch-forecasting ``rnn.LSTM.forward(x, hx, lengths)``: zero lengths packed as 1,
    their returned state replaced by the initial state, then the decoder continues."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(2, 3, num_layers=2, batch_first=True)

    def run(self, x, hx, lengths):  # noqa: ANN001, ANN201
        pack = lengths.where(lengths > 0, torch.ones_like(lengths))
        out, (h, c) = self.rnn(
            rnn_utils.pack_padded_sequence(x, pack, batch_first=True, enforce_sorted=False), hx
        )
        if (lengths == 0).any():
            none = (lengths == 0)[None, :, None]
            h = h.masked_scatter(none, torch.zeros_like(h))
            c = c.masked_scatter(none, torch.zeros_like(c))
        return rnn_utils.pad_packed_sequence(out, batch_first=True)[0], (h, c)

    def forward(self, x, lengths, y):  # noqa: ANN001, ANN201
        _, state = self.run(x, None, lengths)
        dec, _ = self.rnn(y, state)
        return dec


@pytest.mark.parametrize("lengths", [[5, 3, 2], [5, 3, 0]])
def test_pytorch_forecasting_packed_encoder_then_decoder(lengths: list[int]) -> None:
    torch.manual_seed(0)
    model = PackedEncoderDecoder().eval()
    x, y = torch.randn(3, 5, 2), torch.randn(3, 2, 2)
    lens = torch.tensor(lengths)
    with torch.no_grad():
        expected = model(x, lens, y)
        with seqacts.record(model) as rec:
            got = model(x, lens, y)
    assert torch.equal(expected, got)
    if 0 not in lengths:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = rec.to_dataset()
    else:
        ds = told(
            rec,
            r"rnn.l0 call 1; rnn.l1 call 1: some but not all rows of the initial state "
            r"are bitwise the rows that an earlier call of the layer returned",
        )
    h = ds.h.sel(layer="rnn.l1", direction="forward").values
    if 0 not in lengths:
        # every row's decoder steps follow its own encoder steps
        assert ds.sizes["sample"] == 3
        for row, n in enumerate(lengths):
            np.testing.assert_array_equal(h[row, n : n + 2, :3], expected[row].numpy())
            np.testing.assert_array_equal(ds.length.sel(layer="rnn.l1").values[row], n + 2)
    else:
        # the state of the zero-length row was replaced, so the decoder call continues no
        # chain and starts samples of its own; the encoder's row shows the one padded step
        # that the kernel computed (length 1)
        assert ds.sizes["sample"] == 6
        np.testing.assert_array_equal(ds.length.sel(layer="rnn.l1").values, [5, 3, 1, 2, 2, 2])
        np.testing.assert_array_equal(h[3:, :2, :3], expected.numpy())


# --- xlstm sLSTMCell: a module returning (output, states) with states of shape (4, batch, hidden) ---


class StatesFirst(nn.Module):
    """xlstm's ``sLSTMCell.forward`` returns ``(output, state)``, ``state`` of shape
    ``(num_states, batch, hidden)``: the batch is its *second* axis (an ``nn.LSTM``'s ``h_n`` has
    the same shape, ``(layers * directions, batch, hidden)``)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(x), torch.stack([x[:, -1] * k for k in range(1, 5)])


class StatesThenGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = StatesFirst()
        self.rnn = nn.GRU(8, 5, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, states = self.cell(x)
        return self.rnn(y)[0], states


def test_xlstm_states_with_batch_second_are_transposed_not_extra_samples() -> None:
    torch.manual_seed(0)
    model = StatesThenGRU().eval()
    x = torch.randn(3, 6, 8)
    with torch.no_grad():
        out, states = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqacts.RecordingWarning)
        ds = seqacts.extract(model, x, modules=["cell"])
    # 3 samples, not 4 (the states' first axis): every sample is one batch row
    assert ds.sizes["sample"] == 3
    assert ds["cell[1]"].dims == ("sample", "cell[1].dim1", "cell[1].dim2")
    np.testing.assert_array_equal(ds["cell[1]"].values, states.transpose(0, 1).numpy())
    np.testing.assert_array_equal(ds["cell[0]"].values, torch.tanh(x).numpy())
    np.testing.assert_array_equal(ds.h.sel(layer="rnn.l0", direction="forward").values,
                                  out.numpy())


class FlatHead(nn.Module):
    """A per-step head on ``out.reshape(-1, H)`` (batch * time rows, no axis of the batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rnn(x)[0]
        return self.head(out.reshape(-1, 4)).reshape(x.shape[0], x.shape[1], 2)


def test_output_with_more_rows_than_the_batch_is_left_nan_and_told() -> None:
    torch.manual_seed(0)
    model = FlatHead().eval()
    x = torch.randn(3, 5, 3)
    with torch.no_grad():
        out = model.rnn(x)[0]
    with seqacts.record(model, modules=["head"]) as rec, torch.no_grad():
        model(x)
    ds = told(rec, r"'head'.*one batch: call 0: its output \(15x2\) has more rows than the "
                   r"batch of the recorded layers \(3\)")
    # the batch's 3 samples, not 15 of which 12 would hold no layer row
    assert ds.sizes["sample"] == 3
    assert bool(ds["head"].isnull().all())
    np.testing.assert_array_equal(ds.h.sel(layer="rnn.l0", direction="forward").values,
                                  out.numpy())


def test_modules_only_outputs_of_different_first_axes_are_told() -> None:
    # xlstm's stack has no torch recurrent module: modules= alone, nothing tells the batch
    torch.manual_seed(0)
    model = StatesFirst()
    x = torch.randn(3, 6, 8)
    with pytest.warns(seqacts.RecordingWarning) as caught:
        ds = seqacts.extract(model, x, modules=["model"])
    messages = [str(w.message) for w in caught if issubclass(w.category, seqacts.RecordingWarning)]
    mixed = [m for m in messages if "first axes of different sizes" in m]
    assert len(mixed) == 1 and "'model[0]': 3; 'model[1]': 4" in mixed[0]
    assert "cells=" in mixed[0]
    assert any("no recurrent layer" in m for m in messages) and len(messages) == 2
    # the values are still exactly the outputs, each from sample 0 along its first axis
    np.testing.assert_array_equal(ds["model[1]"].values, torch.stack([x[:, -1] * k for k in range(1, 5)]).numpy())
    np.testing.assert_array_equal(ds["model[0]"].values[:3], torch.tanh(x).numpy())


# --- pypots CRLI MultiRNNCell: a ModuleList of cells, each layer fed the previous layer's h ---


class MultiCell(nn.Module):
    """pypots CRLI's ``MultiRNNCell`` (GRU): at each step layer ``i`` receives, as its state,
    the ``h`` the layer below just returned (layer 0: the top layer's ``h`` of the last step)."""

    def __init__(self, n_layers: int = 2) -> None:
        super().__init__()
        self.model = nn.ModuleList([nn.GRUCell(3 if i == 0 else 4, 4) for i in range(n_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], 4)
        outs = []
        for t in range(x.shape[1]):
            for i, cell in enumerate(self.model):
                h = cell(x[:, t] if i == 0 else h, h)
            outs.append(h)
        return torch.stack(outs, 1)


def test_crli_cell_list_declared_by_its_container_path() -> None:
    torch.manual_seed(0)
    model = MultiCell().eval()
    x = torch.randn(3, 5, 3)
    calls: dict[int, list[tuple]] = {}
    handles = [cell.register_forward_hook(outputs_hook(calls.setdefault(i, [])))
               for i, cell in enumerate(model.model)]
    with torch.no_grad():
        expected = model(x)
    for h in handles:
        h.remove()
    # layers= / chain= take the ModuleList's path: every cell inside it
    with pytest.warns(seqacts.RecordingWarning, match=r"declare it: chain=\{'model.0': 'steps'"):
        ds = seqacts.extract(model, x, layers="model")
    assert list(ds.layer.values) == ["model.0", "model.1"]
    before = model_state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqacts.RecordingWarning)
        with seqacts.record(model, chain="model") as rec, torch.no_grad():
            got = model(x)
        ds = rec.to_dataset()
    assert torch.equal(got, expected) and model_state(model) == before
    assert ds.sizes["sample"] == 3 and (ds.length.values == 5).all()
    for i in range(2):
        h = np.stack([out.numpy() for _, out in calls[i]], 1)
        received = np.stack([args[1].numpy() for args, _ in calls[i]], 1)
        np.testing.assert_array_equal(ds.h.sel(layer=f"model.{i}", direction="forward").values, h)
        # the state each step received: the layer below's h (layer 0: the top layer's)
        np.testing.assert_array_equal(
            ds.h_in.sel(layer=f"model.{i}", direction="forward").values, received)
