"""How calls become samples, on the real call patterns that used to mislabel rows (issue 9).

Each test is a small plain-torch model reproducing a pattern found in other people's code:
DeepAR-style sampling, packed cell loops, ``loss()``/``predict()`` calling ``forward``, tied
weights, siamese encoders, gradient checkpointing, copies made inside a ``record()`` block,
autocast, NaN inputs, TorchScript and ``torch.compile``, layers that saw no call, DilatedRNN.
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.utils.checkpoint import checkpoint

import seqacts
from seqacts.schema import CELL_KERNELS, STACK_KERNELS


def no_model_hooks(*models: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks
               for model in models for m in model.modules())


def no_seqacts_left(*models: nn.Module) -> bool:
    clean_models = no_model_hooks(*models)
    clean_global = not torch_module._global_forward_hooks and not (
        torch_module._global_forward_pre_hooks)
    kernels = (*STACK_KERNELS.values(), *CELL_KERNELS.values())
    return clean_models and clean_global and not any(k in torch._VF.__dict__ for k in kernels)


def rows_of(ds, layer: str) -> list[np.ndarray]:  # noqa: ANN001
    """Each sample's valid steps of ``layer`` (forward direction, its units), NaN rows skipped."""
    one = ds.sel(layer=layer)
    width = int(one.n_units)
    out = []
    for s in range(ds.sizes["sample"]):
        n = int(one.length[s])
        h = one.h.values[s, 0, :, :width]
        assert np.isnan(h[n:]).all(), "steps past length must be NaN"
        if n:
            assert not np.isnan(h[:n]).any(), "valid steps must be a prefix"
            out.append(h[:n])
    return out


def same_rows(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    """Every expected row appears exactly once (bitwise), and nothing else."""
    keys = sorted(g.tobytes() + bytes(str(g.shape), "ascii") for g in got)
    want = sorted(e.astype(np.float32).tobytes() + bytes(str(e.shape), "ascii") for e in expected)
    assert len(keys) == len(want)
    assert keys == want


# -- 1. batch size changes inside one forward ---------------------------------------------


class DeepAR(nn.Module):
    """Encode B series, then sample S futures per series with the same GRU, step by step."""

    def __init__(self, draws: int = 3, horizon: int = 4) -> None:
        super().__init__()
        self.rnn = nn.GRU(2, 5, batch_first=True)
        self.proj = nn.Linear(5, 2)
        self.draws, self.horizon = draws, horizon
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(x)
        self.seen = [out]
        h = h.repeat_interleave(self.draws, dim=1)
        y = self.proj(out[:, -1:]).repeat_interleave(self.draws, dim=0)
        ys = []
        for _ in range(self.horizon):
            step, h = self.rnn(y, h)
            self.seen.append(step)
            y = self.proj(step)
            ys.append(y)
        return torch.cat(ys, 1)


def test_deepar_sampling_gives_encoder_rows_and_draw_rows():
    torch.manual_seed(0)
    model = DeepAR().eval()
    x = torch.randn(2, 6, 2)
    with torch.no_grad(), seqacts.record(model) as rec:
        model(x)
    ds = rec.to_dataset()
    enc, *steps = (t.numpy() for t in model.seen)
    draws = np.concatenate(steps, axis=1)  # (B*S, horizon, H): one chain per draw
    assert ds.sizes["sample"] == 2 + 6
    assert ds.length.sel(layer="rnn.l0").values.tolist() == [6, 6, 4, 4, 4, 4, 4, 4]
    same_rows(rows_of(ds, "rnn.l0"), [*enc, *draws])
    np.testing.assert_array_equal(ds.call.sel(layer="rnn.l0").values, [0, 0, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(ds.call_row.sel(layer="rnn.l0").values, [0, 1, 0, 1, 2, 3, 4, 5])


def test_encoder_and_decoder_of_different_batch_sizes_are_not_aligned_and_warn():
    class TwoModules(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.LSTM(2, 4, batch_first=True)
            self.decoder = nn.GRUCell(2, 4)

        def forward(self, x):  # noqa: ANN001, ANN201
            _, (h, _) = self.encoder(x)
            h = h[0].repeat_interleave(3, dim=0)
            for _ in range(2):
                h = self.decoder(x.new_zeros(h.shape[0], 2), h)
            return h

    model = TwoModules()
    with pytest.warns(seqacts.RecordingWarning, match=r"encoder.l0 \[2\]; decoder \[6\]"):
        ds = seqacts.extract(model, torch.randn(2, 5, 2))
    assert ds.sizes["sample"] == 8
    assert ds.length.sel(layer="encoder.l0").values.tolist() == [5, 5] + [0] * 6
    assert ds.length.sel(layer="decoder").values.tolist() == [0, 0] + [2] * 6
    assert ds.call_row.sel(layer="decoder").values.tolist() == [-1, -1, 0, 1, 2, 3, 4, 5]
    assert np.isnan(ds.h.sel(layer="encoder.l0").values[2:]).all()


def test_cell_loop_over_a_shrinking_packed_batch_is_one_chain_per_sample():
    torch.manual_seed(1)
    cell = nn.LSTMCell(3, 4)
    lengths = [5, 4, 2, 1]  # sorted, as a PackedSequence's batch_sizes imply
    x = torch.randn(5, 4, 3)
    expected: list[list[np.ndarray]] = [[] for _ in lengths]
    with torch.no_grad(), seqacts.record(cell) as rec:
        h = c = torch.zeros(4, 4)
        for t in range(5):
            n = sum(length > t for length in lengths)
            h, c = cell(x[t, :n], (h[:n], c[:n]))
            for i in range(n):
                expected[i].append(h[i].numpy().copy())
    ds = rec.to_dataset()
    assert ds.sizes["sample"] == 4 and ds.length.values[:, 0].tolist() == lengths
    same_rows(rows_of(ds, "cell"), [np.stack(e) for e in expected])
    assert "call" not in ds.coords  # one chain per layer: the rows are simply the batch


# -- 2. calls from methods other than forward ----------------------------------------------


class Forecaster(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(2, 4, batch_first=True)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0])

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).pow(2).mean()  # gluonts/flair style: no module hooks fire

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])  # a submodule called directly


def test_loss_and_predict_batches_become_separate_samples():
    torch.manual_seed(2)
    model = Forecaster()
    batches = [torch.randn(4, 6, 2) for _ in range(3)]
    with seqacts.record(model) as rec:
        model.loss(batches[0])
        model.loss(batches[1])
        model.predict(batches[2][:3])
    ds = rec.to_dataset()
    assert ds.sizes["sample"] == 11 and ds.sizes["time"] == 6
    assert ds.length.values[:, 0].tolist() == [6] * 11
    with torch.no_grad():
        expected = [model.rnn(b)[0].numpy() for b in (batches[0], batches[1], batches[2][:3])]
    np.testing.assert_array_equal(ds.h.values[:, 0, 0], np.concatenate(expected))


# -- 3. tied weights -----------------------------------------------------------------------


def test_tied_weights_credit_each_call_to_the_module_that_made_it():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.LSTM(3, 4)
            self.b = nn.LSTM(3, 4)
            for name, p in self.a.named_parameters():
                setattr(self.b, name, p)

        def forward(self, x, y):  # noqa: ANN001, ANN201
            return self.a(x)[0], self.b(y)[0]

    torch.manual_seed(3)
    model = Tied()
    x, y = torch.randn(5, 2, 3), torch.randn(7, 2, 3)
    with torch.no_grad():
        ds = seqacts.extract(model, x, y)
        out_a, out_b = model(x, y)
    assert ds.length.sel(layer="a.l0").values.tolist() == [5, 5]
    assert ds.length.sel(layer="b.l0").values.tolist() == [7, 7]
    np.testing.assert_array_equal(ds.h.sel(layer="a.l0").values[:, 0, :5], out_a.transpose(0, 1))
    np.testing.assert_array_equal(ds.h.sel(layer="b.l0").values[:, 0], out_b.transpose(0, 1))


# -- 4. one encoder over two unrelated inputs ----------------------------------------------


def test_siamese_encoder_inputs_are_separate_samples_not_glued():
    class Siamese(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.GRU(3, 4, batch_first=True)
            self.head = nn.GRU(8, 2, batch_first=True)

        def forward(self, q, d):  # noqa: ANN001, ANN201
            eq, ed = self.encoder(q)[0], self.encoder(d)[0]
            return self.head(torch.cat([eq[:, -1:], ed[:, -1:]], -1))[0]

    torch.manual_seed(4)
    model = Siamese()
    q, d = torch.randn(2, 5, 3), torch.randn(2, 7, 3)
    with pytest.warns(seqacts.RecordingWarning, match=r"encoder.l0 \[2, 2\]; head.l0 \[2\]"):
        ds = seqacts.extract(model, q, d)
    with torch.no_grad():
        expected = [*model.encoder(q)[0].numpy(), *model.encoder(d)[0].numpy()]
    same_rows(rows_of(ds, "encoder.l0"), expected)
    assert ds.sizes["time"] == 7  # not 12: nothing glued along time
    assert ds.call.sel(layer="encoder.l0").values.tolist() == [0, 0, 1, 1, -1, -1]

    only = seqacts.extract(model.encoder, q)  # the usual case: no provenance coordinates
    assert "call" not in only.coords


# -- 5. gradient checkpointing -------------------------------------------------------------


@pytest.mark.parametrize("reentrant", [True, False])
def test_checkpoint_recomputation_is_not_recorded_again(reentrant):
    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(3, 4, num_layers=2, batch_first=True)
            self.cell = nn.GRUCell(4, 4)

        def inner(self, x):  # noqa: ANN001, ANN201
            out = self.rnn(x)[0]
            return self.cell(out[:, -1])

        def forward(self, x):  # noqa: ANN001, ANN201
            return checkpoint(self.inner, x, use_reentrant=reentrant)

    torch.manual_seed(5)
    model = Checkpointed()
    x = torch.randn(3, 5, 3, requires_grad=True)
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with seqacts.record(model) as rec:
        model(x).sum().backward()
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters(), strict=True))
    ds = rec.to_dataset()
    assert ds.sizes["sample"] == 3
    assert ds.length.values.tolist() == [[5, 5, 1]] * 3
    assert no_seqacts_left(model)


# -- 6. copies made inside a record() block ------------------------------------------------


def test_copies_and_pickles_made_inside_the_block_carry_nothing(seq2seq):
    x = torch.randn(2, 5, 3)
    plain_size = len(pickle.dumps(seq2seq))
    with seqacts.record(seq2seq, modules=["head"]) as rec:
        seq2seq(x)
        twin = copy.deepcopy(seq2seq)
        buffer = io.BytesIO()
        torch.save(seq2seq, buffer)
        assert no_model_hooks(seq2seq, twin)  # no hooks stored on the model, so none copied
        twin(x)  # another module with other weights: not recorded
    assert len(pickle.dumps(seq2seq)) == plain_size
    assert abs(len(buffer.getvalue()) - plain_size) < plain_size // 2
    before = rec.to_dataset()
    twin(x)
    seq2seq(x)
    buffer.seek(0)
    torch.load(buffer, weights_only=False)(x)
    after = rec.to_dataset()
    assert before.sizes["sample"] == after.sizes["sample"] == 2
    assert no_seqacts_left(seq2seq, twin)


# -- 7. autocast and failures of seqacts' own bookkeeping ----------------------------------


def test_autocast_bfloat16_with_internals_never_raises(seq2seq):
    model = nn.Sequential()
    model.add_module("lstm", nn.LSTM(3, 4, num_layers=2, batch_first=True))
    x = torch.randn(2, 5, 3)
    for m, label, width in ((model, "lstm.l0", 4), (seq2seq, "decoder", 6)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16), seqacts.record(m, internals=True) as rec:
            recorded = m(x)
        if isinstance(plain, tuple):
            plain, recorded = plain[0], recorded[0]
        assert torch.equal(plain, recorded)
        ds = rec.to_dataset()
        assert ds.h.dtype == np.float32 and ds.c.dtype == np.float32
        layer = ds.sel(layer=label, direction="forward").isel(unit=slice(0, width))
        # h = o * tanh(c), computed in bfloat16 like the kernel
        np.testing.assert_allclose(layer.output_gate.values * np.tanh(layer.c.values),
                                   layer.h.values, atol=3e-2)
    assert no_seqacts_left(model, seq2seq)


def test_a_failure_inside_seqacts_never_breaks_the_forward(seq2seq, monkeypatch):
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("bookkeeping exploded")

    x = torch.randn(2, 5, 3)
    plain = seq2seq(x)
    monkeypatch.setattr("seqacts.capture.recorder.stack_internals", broken)
    with seqacts.record(seq2seq) as rec:
        recorded = seq2seq(x)
    assert torch.equal(plain, recorded)
    with pytest.warns(seqacts.RecordingWarning, match="bookkeeping exploded"):
        ds = rec.to_dataset()
    assert ds.attrs["failed_layers"] == "encoder.l0 encoder.l1"
    assert ds.length.sel(layer="decoder").values.tolist() == [4, 4]


# -- 8. NaN in the input -------------------------------------------------------------------


def test_nan_input_is_marked_warned_and_left_out_of_summaries():
    torch.manual_seed(6)
    model = nn.GRU(2, 3, batch_first=True)
    x = torch.randn(4, 6, 2)
    x[2, 3, 1] = float("nan")
    with pytest.warns(seqacts.RecordingWarning, match="first sample 2 of layer l0 from step 3"):
        ds = seqacts.extract(model, x)
    assert ds.nonfinite.values[:, 0].tolist() == [0, 0, 3, 0]
    assert ds.length.values[:, 0].tolist() == [6] * 4
    with pytest.warns(seqacts.RecordingWarning, match="1 sample"):
        ds.seqacts.summary()


# -- 9. clear messages ---------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning")
def test_torchscript_and_compiled_models_are_named():
    lstm = nn.LSTM(3, 4)
    with pytest.raises(seqacts.UnsupportedModelError, match="TorchScript.*eager"):
        seqacts.extract(torch.jit.script(lstm), torch.randn(5, 2, 3))

    class Holder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.jit.script(nn.LSTM(3, 4))

    with pytest.raises(seqacts.UnsupportedModelError, match="inner is TorchScript"):
        seqacts.layers(Holder())
    compiled = torch.compile(lstm)
    with pytest.raises(seqacts.UnsupportedModelError, match=r"torch.compile.*model._orig_mod"):
        seqacts.extract(compiled, torch.randn(5, 2, 3))
    assert isinstance(seqacts.UnsupportedModelError("x"), TypeError)


def test_a_layer_that_saw_no_call_is_reported():
    class Cached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.chars = nn.LSTM(3, 4)
            self.words = nn.GRU(3, 4)

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.words(x)[0]  # char embeddings came from a cache

    with pytest.warns(seqacts.RecordingWarning, match=r"chars.l0 recorded no call"):
        ds = seqacts.extract(Cached(), torch.randn(5, 2, 3))
    assert (ds.length.sel(layer="chars.l0") == 0).all()


def test_dilated_rnn_rows_are_not_padded_into_the_batch():
    class Dilated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l0 = nn.GRU(2, 3, batch_first=True)
            self.l1 = nn.GRU(3, 3, batch_first=True)

        def forward(self, x):  # noqa: ANN001, ANN201
            out = self.l0(x)[0]
            b, t, h = out.shape  # rate 2: even and odd steps become separate rows
            dilated = out.reshape(b, t // 2, 2, h).transpose(1, 2).reshape(b * 2, t // 2, h)
            return self.l1(dilated)[0]

    torch.manual_seed(7)
    model = Dilated()
    x = torch.randn(3, 8, 2)
    with pytest.warns(seqacts.RecordingWarning, match=r"l0.l0 \[3\]; l1.l0 \[6\]"):
        ds = seqacts.extract(model, x)
    assert ds.sizes["sample"] == 9
    assert ds.length.sel(layer="l1.l0").values.tolist() == [0] * 3 + [4] * 6
    assert ds.call_row.sel(layer="l1.l0").values.tolist() == [-1] * 3 + list(range(6))


def test_no_warning_in_the_usual_case(seq2seq):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = seqacts.extract(seq2seq, torch.randn(3, 5, 3))
    assert "call" not in ds.coords and (ds.nonfinite == 0).all()


def test_packed_stack_fed_chunk_by_chunk_chains_by_value():
    """A PackedSequence LSTM continued with its (un-sorted, hence copied) state: bitwise match."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(8)
    lstm = nn.LSTM(2, 3)
    lengths = [[2, 3, 1], [3, 1, 2]]  # per chunk; the rows' valid steps must stay a prefix
    chunks = [torch.randn(3, 3, 2) for _ in lengths]
    expected: list[list[np.ndarray]] = [[], [], []]
    with torch.no_grad(), seqacts.record(lstm) as rec:
        state = None
        for x, lens in zip(chunks, lengths, strict=True):
            out, state = lstm(pack_padded_sequence(x, torch.tensor(lens), enforce_sorted=False),
                              state)
            padded, _ = pad_packed_sequence(out)
            for i, n in enumerate(lens):
                expected[i].extend(padded[:n, i].numpy())
    ds = rec.to_dataset()
    assert ds.length.values[:, 0].tolist() == [5, 4, 3]
    same_rows(rows_of(ds, "l0"), [np.stack(e) for e in expected])


def test_unbatched_stepwise_lstm_chains_through_its_squeezed_state():
    torch.manual_seed(9)
    lstm = nn.LSTM(2, 3, num_layers=2)
    x = torch.randn(4, 2)
    with torch.no_grad(), seqacts.record(lstm) as rec:
        state, outs = None, []
        for t in range(4):
            out, state = lstm(x[t : t + 1], state)
            outs.append(out[0].numpy())
    ds = rec.to_dataset()
    assert ds.sizes["sample"] == 1 and ds.length.values.tolist() == [[4, 4]]
    np.testing.assert_array_equal(ds.h.sel(layer="l1").values[0, 0], np.stack(outs))


def test_a_state_modified_in_place_before_being_passed_starts_new_samples():
    """Recurrent dropout applied in place: the state passed is no longer the one returned."""
    torch.manual_seed(10)
    cell = nn.GRUCell(2, 3)
    with torch.no_grad(), seqacts.record(cell) as rec:
        h = cell(torch.randn(2, 2))
        h.mul_(2.0)  # same tensor, other values
        h = cell(torch.randn(2, 2), h)
        h = cell(torch.randn(2, 2), h)  # passed unchanged: continues
    with pytest.warns(seqacts.RecordingWarning, match=r"cell call 1 started new samples"):
        ds = rec.to_dataset()
    assert ds.length.values[:, 0].tolist() == [1, 1, 2, 2]


def test_provenance_coordinates_stream_to_netcdf(tmp_path):
    import xarray as xr

    torch.manual_seed(11)
    model = DeepAR().eval()
    batches = [torch.randn(2, 6, 2), torch.randn(3, 5, 2)]
    path = seqacts.extract_to_netcdf(model, batches, tmp_path / "deepar.nc", progress=False)
    parts = [seqacts.extract(model, b) for b in batches]
    expected = xr.concat(parts, dim="sample", join="outer", combine_attrs="override")
    with xr.open_dataset(path) as got:
        for name in ("call", "call_row", "length", "nonfinite"):
            np.testing.assert_array_equal(got[name].values, expected[name].values)
        np.testing.assert_array_equal(got.h.values, expected.h.values)


# -- 8. calls whose state is partly explained by a returned state: told, never relinked ------


def dead_relu_cell() -> nn.RNNCell:
    """A relu cell whose every state is all zeros (the bias keeps each unit below zero)."""
    torch.manual_seed(12)
    cell = nn.RNNCell(2, 3, nonlinearity="relu")
    with torch.no_grad():
        cell.bias_ih.fill_(-50.0)
    return cell


def fresh_state_in_every_call(seq2seq) -> None:  # noqa: ANN001
    model = Forecaster()
    with torch.no_grad(), seqacts.record(model) as rec:
        model.loss(torch.randn(4, 6, 2))
        model.loss(torch.randn(4, 6, 2))  # the module's own fresh zeros, twice in one group
        model(torch.randn(4, 6, 2))
        model(torch.randn(3, 6, 2))
    assert rec.to_dataset().sizes["sample"] == 15
    with torch.no_grad(), seqacts.record(seq2seq) as rec:
        for _ in range(3):
            seq2seq(torch.randn(2, 5, 3))
    assert rec.to_dataset().sizes["sample"] == 6
    dead = nn.Sequential(dead_relu_cell())  # zeros returned, fresh zeros in the next call
    with torch.no_grad(), seqacts.record(dead) as rec:
        dead(torch.randn(2, 2))
        dead(torch.randn(2, 2))
    assert rec.to_dataset().sizes["sample"] == 4


def all_zero_state_passed_as_the_same_tensor(seq2seq) -> None:  # noqa: ANN001
    cell = dead_relu_cell()
    x = torch.randn(5, 4, 2)
    with torch.no_grad(), seqacts.record(cell) as rec:
        h = None
        for t in range(5):
            h = cell(x[t], h)
            assert not h.any()
    ds = rec.to_dataset()
    assert ds.sizes["sample"] == 4 and ds.length.values[:, 0].tolist() == [5] * 4


def fresh_start_after_a_row_that_died(seq2seq) -> None:  # noqa: ANN001
    cell = nn.RNNCell(2, 3, nonlinearity="relu")
    with torch.no_grad():
        cell.weight_ih.fill_(1.0)
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
    x = torch.tensor([[-5.0, -5.0], [1.0, 1.0]])  # row 0 returns zeros, row 1 does not
    with torch.no_grad(), seqacts.record(cell) as rec:
        assert not cell(x)[0].any()
        cell(x)  # a fresh start: its zero row 0 equals the returned row 0, row 1 does not
    assert rec.to_dataset().sizes["sample"] == 4


def shrinking_packed_cell_loop(seq2seq) -> None:  # noqa: ANN001
    cell = nn.GRUCell(3, 4)
    x = torch.randn(4, 3, 3)
    with torch.no_grad(), seqacts.record(cell) as rec:
        h = torch.zeros(3, 4)
        for t, n in enumerate([3, 3, 2, 1]):
            h = cell(x[t, :n], h[:n])
    assert rec.to_dataset().length.values[:, 0].tolist() == [4, 3, 2]


def draws_sampled_from_the_encoder_state(seq2seq) -> None:  # noqa: ANN001
    with torch.no_grad(), seqacts.record(DeepAR().eval()) as rec:
        rec.model(torch.randn(2, 6, 2))
    assert rec.to_dataset().sizes["sample"] == 8


def state_carried_between_calls_of_a_model_that_is_the_lstm(seq2seq) -> None:  # noqa: ANN001
    lstm = nn.LSTM(2, 3)
    with torch.no_grad(), seqacts.record(lstm) as rec:
        state = None
        for _ in range(3):
            _, state = lstm(torch.randn(4, 2, 2), state)
    assert rec.to_dataset().length.values[:, 0].tolist() == [12, 12]


@pytest.mark.parametrize("pattern", [
    fresh_state_in_every_call,
    all_zero_state_passed_as_the_same_tensor,
    fresh_start_after_a_row_that_died,
    shrinking_packed_cell_loop,
    draws_sampled_from_the_encoder_state,
    state_carried_between_calls_of_a_model_that_is_the_lstm,
])
def test_usual_patterns_are_not_told_as_splits(pattern, seq2seq):  # noqa: ANN001
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqacts.RecordingWarning)
        pattern(seq2seq)


@pytest.mark.parametrize("row", [0, 2])
def test_a_state_with_one_row_replaced_is_told_and_still_starts_new_samples(row):
    torch.manual_seed(13)
    lstm = nn.LSTM(2, 3)
    x = torch.randn(4, 3, 2)
    with torch.no_grad(), seqacts.record(lstm) as rec:
        _, (h, c) = lstm(x)
        h, c = h.clone(), c.clone()
        h[:, row], c[:, row] = 0.0, 0.0  # a reset row: the other rows are the returned state
        lstm(x, (h, c))
    with pytest.warns(seqacts.RecordingWarning, match=r"^seqacts: l0 call 1: some but not all "
                      r"rows of the initial state are bitwise the rows") as caught:
        ds = rec.to_dataset()
    assert len(caught) == 1
    assert ds.sizes["sample"] == 6 and ds.length.values[:, 0].tolist() == [4] * 6


def test_a_state_reset_entirely_is_not_told_a_reordered_or_rescaled_one_is():
    """A reset to zeros is a fresh start; no row kept in place (reordered, rescaled) in a loop
    of one-step calls of one batch size is the steps warning, naming chain= (issue 20)."""
    torch.manual_seed(14)
    cell = nn.GRUCell(2, 3)
    x = torch.randn(3, 2)
    with torch.no_grad(), seqacts.record(cell) as rec:
        h = cell(x)
        h = cell(x, torch.zeros_like(h))
        h = cell(x, h[[1, 2, 0]])
        h = cell(x, h * 0.5)
    with pytest.warns(seqacts.RecordingWarning) as caught:
        ds = rec.to_dataset()
    assert [str(w.message)[:56] for w in caught] == [
        "seqacts: cell calls 2, 3 started new samples within one "]
    assert "declare it: chain={'cell': 'steps'}" in str(caught[0].message)
    assert ds.sizes["sample"] == 12


def test_split_warnings_count_calls_as_the_dataset_does():
    """Calls are numbered per layer across the whole recording, like the 'call' coordinate."""
    cell = dead_relu_cell()
    model = nn.Sequential(cell)
    x = torch.randn(2, 2)
    with torch.no_grad(), seqacts.record(model) as rec:
        model(x)
        cell(x, torch.stack([cell(x)])[0])  # outside a root call: its own group, calls 1 and 2
    with pytest.warns(seqacts.RecordingWarning, match=r"^seqacts: 0 call 2: the initial state "
                      r"is all zeros, equal to the all-zero state an earlier call returned"):
        ds = rec.to_dataset()
    assert ds.sizes["sample"] == 6
