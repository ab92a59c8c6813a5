"""The model behaves exactly as without recording, and recording always cleans up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from conftest import Seq2Seq
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqacts
from seqacts.schema import CELL_KERNELS, STACK_KERNELS

KERNELS = (*STACK_KERNELS.values(), *CELL_KERNELS.values())


def no_hooks_left(model: nn.Module) -> bool:
    from torch.nn.modules import module as torch_module

    no_global = not torch_module._global_forward_hooks and not (
        torch_module._global_forward_pre_hooks)
    return all(
        not m._forward_hooks and not m._forward_pre_hooks for m in model.modules()
    ) and no_global and not any(name in torch._VF.__dict__ for name in KERNELS)


class Stacked(nn.Module):
    def __init__(self, kind: type[nn.RNNBase] = nn.LSTM, dropout: float = 0.3) -> None:
        super().__init__()
        self.rnn = kind(4, 8, num_layers=3, dropout=dropout, bidirectional=True, batch_first=True)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        out = out[0] if isinstance(out, tuple) else out
        return self.head(out)


def run(model: nn.Module, x: object, seed: int = 0) -> object:
    torch.manual_seed(seed)
    return model(x)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("train", [False, True])
def test_outputs_bit_identical_with_and_without_recording(kind, train):
    torch.manual_seed(1)
    model = Stacked(kind).train(train)
    x = torch.randn(5, 9, 4)
    plain = run(model, x)
    with seqacts.record(model, internals=True) as rec:
        recorded = run(model, x)
    assert torch.equal(plain, recorded)
    assert model.training is train
    assert no_hooks_left(model)
    ds = rec.to_dataset()
    # the top layer's recorded h is exactly what the model received
    top = torch.from_numpy(ds.h.sel(layer="rnn.l2").values)  # (sample, dir, time, unit)
    torch.manual_seed(0)  # same grad mode as the recorded run: oneDNN rounds per mode
    out, _ = model.rnn(x)
    out = out.detach()
    np.testing.assert_array_equal(top[:, 0, :, :8].numpy(), out[..., :8].numpy())
    np.testing.assert_array_equal(top[:, 1, :, :8].numpy(), out[..., 8:].numpy())


def test_packed_and_cells_bit_identical(seq2seq):
    x = torch.randn(4, 7, 3)
    plain = seq2seq(x)
    with seqacts.record(seq2seq) as rec:
        recorded = seq2seq(x)
    assert torch.equal(plain, recorded)
    lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    packed = pack_padded_sequence(x.transpose(0, 1), torch.tensor([7, 2, 5, 3]),
                                  enforce_sorted=False)
    plain_out, (h, c) = lstm(packed)
    with seqacts.record(lstm) as rec:
        out, (h2, c2) = lstm(packed)
    assert torch.equal(plain_out.data, out.data) and torch.equal(h, h2) and torch.equal(c, c2)
    ds = rec.to_dataset()
    padded, _ = pad_packed_sequence(out, padding_value=float("nan"))
    np.testing.assert_array_equal(
        ds.h.sel(layer="l1", direction="forward").values[..., :5],
        padded[..., :5].transpose(0, 1).detach().numpy(),
    )
    assert list(ds.length.sel(layer="l0").values) == [7, 2, 5, 3]


def test_grad_mode_requires_grad_and_gradients_untouched():
    torch.manual_seed(2)
    model = Stacked(nn.GRU).train()
    x = torch.randn(3, 5, 4, requires_grad=True)
    run(model, x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    x_grad = x.grad.clone()
    model.zero_grad()
    x.grad = None
    with seqacts.record(model) as rec:
        run(model, x).sum().backward()
    for before, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(before, p.grad, rtol=0, atol=1e-6)
    torch.testing.assert_close(x_grad, x.grad, rtol=0, atol=1e-6)
    assert all(p.requires_grad for p in model.parameters())
    assert isinstance(rec.to_dataset().h.values, np.ndarray)  # plain arrays, no graph


def test_no_grad_recording_and_in_place_changes_after_the_call():
    model = nn.LSTM(2, 3)
    x = torch.randn(4, 1, 2)
    with torch.no_grad(), seqacts.record(model) as rec:
        out, _ = model(x)
        expected = out.clone()
        out.mul_(0)  # the user's code modifies the output in place afterwards
    np.testing.assert_array_equal(rec.to_dataset().h.values[0, 0, 0], expected[:, 0].numpy())


def test_hooks_removed_when_forward_raises():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(3, 4)
            self.head = nn.Linear(5, 1)  # wrong width: fails after the GRU ran

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.head(self.rnn(x)[0])

    model = Broken()
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        seqacts.extract(model, torch.randn(5, 2, 3))
    assert no_hooks_left(model)
    with pytest.raises(RuntimeError):
        with seqacts.record(model):
            model(torch.randn(5, 2, 3))
    assert no_hooks_left(model)


def test_model_rejects_input_with_its_own_error():
    model = nn.LSTM(3, 4)
    with pytest.raises((RuntimeError, ValueError), match="input.size\\(-1\\) must be equal to"):
        seqacts.extract(model, torch.randn(5, 2, 7))
    assert no_hooks_left(model)


def test_failed_forward_inside_record_is_dropped_and_recording_goes_on():
    model = nn.GRU(3, 4)
    with seqacts.record(model) as rec:
        with pytest.raises(RuntimeError):
            model(torch.randn(5, 2, 9))
        model(torch.randn(5, 2, 3))
    assert rec.to_dataset().sizes["sample"] == 2


def test_nested_records_both_see_everything(seq2seq):
    x = torch.randn(2, 5, 3)
    with seqacts.record(seq2seq) as outer:
        with seqacts.record(seq2seq, layers="decoder", internals=True) as inner:
            seq2seq(x)
        seq2seq(x)
    assert no_hooks_left(seq2seq)
    a, b = outer.to_dataset(), inner.to_dataset()
    assert a.sizes["sample"] == 4 and b.sizes["sample"] == 2
    steps = b.sizes["time"]  # the outer record also holds the longer encoder sequence
    xr.testing.assert_equal(a.h.sel(layer="decoder").isel(sample=[0, 1], time=slice(0, steps)),
                            b.h.sel(layer="decoder"))


def test_several_forward_calls_append_along_sample_with_time_padding():
    model = nn.GRU(3, 4, batch_first=True)
    with seqacts.record(model) as rec:
        model(torch.randn(2, 5, 3))
        model(torch.randn(3, 8, 3))
    ds = rec.to_dataset()
    assert ds.sizes["sample"] == 5 and ds.sizes["time"] == 8
    assert np.isnan(ds.h.isel(sample=[0, 1], time=slice(5, None))).all()
    assert list(ds.length.sel(layer="l0").values) == [5, 5, 8, 8, 8]


def test_cells_and_stepwise_stack_calls_stack_along_time(seq2seq):
    ds = seqacts.extract(seq2seq, torch.randn(2, 5, 3))
    assert list(ds.layer.values) == ["encoder.l0", "encoder.l1", "decoder"]
    assert list(ds.kind.values) == ["GRU", "GRU", "LSTMCell"]
    assert ds.length.sel(layer="decoder").values.tolist() == [4, 4]
    assert np.isnan(ds.h.sel(layer="decoder", time=4)).all()
    # the decoder starts from the encoder's final state
    np.testing.assert_array_equal(ds.h_0.sel(layer="decoder").values,
                                  ds.h_n.sel(layer="encoder.l1").values)

    class Stepwise(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(1, 3)

        def forward(self, x):  # noqa: ANN001, ANN201
            state = None
            for t in range(x.shape[0]):
                out, state = self.lstm(x[t : t + 1], state)
            return out

    x = torch.randn(6, 2, 1)
    model = Stepwise()
    stepwise = seqacts.extract(model, x)
    whole = seqacts.extract(model.lstm, x)  # the same LSTM over the whole sequence at once
    assert stepwise.sizes["time"] == 6
    np.testing.assert_allclose(stepwise.h.values, whole.h.values, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(stepwise.h_0.values, whole.h_0.values)


def test_layer_selection_and_errors(seq2seq):
    assert seqacts.layers(seq2seq) == ["encoder.l0", "encoder.l1", "decoder"]
    x = torch.randn(2, 5, 3)
    assert list(seqacts.extract(seq2seq, x, layers="encoder").layer.values) == [
        "encoder.l0", "encoder.l1"]
    assert list(seqacts.extract(seq2seq, x, layers="*.l1").layer.values) == ["encoder.l1"]
    assert list(seqacts.extract(seq2seq, x, layers=["decoder", "encoder.l0"]).layer.values) == [
        "encoder.l0", "decoder"]
    with pytest.raises(ValueError, match="no layer matches 'encoder.l3'; available: "
                       "encoder.l0, encoder.l1, decoder"):
        seqacts.extract(seq2seq, x, layers="encoder.l3")
    with pytest.raises(ValueError, match="holds no recurrent module.*Linear"):
        seqacts.extract(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), x)
    with pytest.raises(ValueError, match="internals: unknown variable 'forget'"):
        seqacts.extract(seq2seq, x, internals=["forget"])
    with pytest.raises(ValueError, match="modules: no module matches 'nope'.*encoder"):
        seqacts.extract(seq2seq, x, modules="nope")
    assert no_hooks_left(seq2seq)


def test_other_modules_are_recorded(seq2seq):
    ds = seqacts.extract(seq2seq, torch.randn(2, 5, 3), modules=["head"])
    assert ds["head"].dims == ("sample", "head.call", "head.dim1")
    assert ds["head"].shape == (2, 4, 1)
    y = seq2seq(torch.zeros(1, 1, 3))
    assert y.shape == (1, 4)


def test_time_labels_and_netcdf_roundtrip(tmp_path):
    model = nn.LSTM(3, 4, num_layers=2, proj_size=2, batch_first=True)
    stamps = pd.date_range("2026-01-01", periods=6, freq="min")
    ds = seqacts.extract(model, torch.randn(2, 6, 3), time=stamps, internals=True)
    assert (ds.time.values == stamps.values).all()
    for key in ("seqacts_version", "torch_version", "model_class", "created"):
        assert ds.attrs[key]
    path = tmp_path / "acts.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path) as back:
        xr.testing.assert_equal(ds, back.load())
    with pytest.raises(ValueError, match="time: got 3 labels for 6 recorded timesteps"):
        seqacts.extract(model, torch.randn(2, 6, 3), time=stamps[:3])


@pytest.mark.parametrize("dtype,stored", [(torch.float64, np.float64), (torch.bfloat16, np.float32),
                                          (torch.float32, np.float32)])
def test_dtype_kept(dtype, stored):
    model = nn.GRU(3, 4).to(dtype)
    ds = seqacts.extract(model, torch.randn(5, 2, 3, dtype=dtype))
    assert ds.h.dtype == stored
    assert next(model.parameters()).dtype == dtype


def test_messy_models_subclass_internal_packing_and_direct_kernel_calls():
    class MyLSTM(nn.LSTM):
        def forward(self, x, hx=None):  # noqa: ANN001, ANN201
            out, state = super().forward(x, hx)
            return out * 2, state

    class Packs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = MyLSTM(3, 4, num_layers=2, batch_first=True)

        def forward(self, x, lengths):  # noqa: ANN001, ANN201
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            self.lstm.flatten_parameters()
            out, _ = self.lstm.forward(packed)  # .forward() directly: no module hooks fire
            return out

    model = Packs()
    x = torch.randn(3, 6, 3)
    ds = seqacts.extract(model, x, torch.tensor([2, 6, 4]))
    assert ds.length.sel(layer="lstm.l1").values.tolist() == [2, 6, 4]
    assert np.isnan(ds.h.sel(layer="lstm.l1").isel(sample=0, time=slice(2, None))).all()
    assert not np.isnan(ds.h.sel(layer="lstm.l1", direction="forward").isel(
        sample=1, unit=slice(0, 4))).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    torch.manual_seed(3)
    model = Seq2Seq().eval()
    x = torch.randn(2, 5, 3)
    cpu = seqacts.extract(model, x, internals=True)
    gpu = seqacts.extract(model.cuda(), x.cuda(), internals=True)
    assert next(model.parameters()).is_cuda
    for name in ("h", "h_n", "c"):
        np.testing.assert_allclose(cpu[name].values, gpu[name].values, rtol=1e-4, atol=1e-5)


def test_cell_calls_outside_the_root_forward_stack_along_time(seq2seq):
    h = torch.zeros(2, 6)
    state = (h, h)
    with seqacts.record(seq2seq, layers="decoder") as rec:
        for _ in range(3):  # driven by hand, not through seq2seq.forward
            state = seq2seq.decoder(torch.randn(2, 1), state)
    ds = rec.to_dataset()
    assert ds.sizes["time"] == 3 and ds.sizes["sample"] == 2
    np.testing.assert_array_equal(ds.h_n.sel(layer="decoder", direction="forward").values,
                                  state[0].detach().numpy())


def test_model_that_is_a_cell_is_labelled_cell():
    cell = nn.GRUCell(2, 3)
    assert seqacts.layers(cell) == ["cell"]
    ds = seqacts.extract(cell, torch.randn(4, 2))
    assert ds.sizes["time"] == 1 and list(ds.kind.values) == ["GRUCell"]


def test_root_model_output_joins_its_own_forward():
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    ds = seqacts.extract(lstm, torch.randn(5, 7, 3), modules="*")
    assert ds.sizes["sample"] == 5
    assert ds["model"].dims == ("sample", "model.dim1", "model.dim2")
    np.testing.assert_array_equal(ds["model"].values[..., 4:],
                                  ds.h.sel(layer="l1", direction="backward").values)
