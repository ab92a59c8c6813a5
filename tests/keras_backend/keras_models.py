"""Keras models on one backend (``KERAS_BACKEND``), every variable against the float64
reference of ``reference_keras``. Run by ``tests/test_keras.py``, one process per backend
(the file name keeps the parent run from collecting it)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import xarray as xr
from keras import layers as L

import seqacts

sys.path.insert(0, str(Path(__file__).parent))  # no conftest here: the parent run loads those
from reference_keras import run  # noqa: E402

BACKEND = keras.backend.backend()
RTOL, ATOL = 1e-4, 2e-5
RNG = np.random.default_rng(0)


def data(n=3, steps=7, features=4, pad=None):
    x = RNG.normal(size=(n, steps, features)).astype("float32")
    if pad:
        for row, start in pad.items():
            x[row, start:] = 0.0
    return x


def weights(layer):
    return [np.asarray(w, np.float64) for w in layer.get_weights()]


def close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=RTOL, atol=ATOL,
                               err_msg=what)


def compare(ds, label, refs, names):
    """Every recorded variable of ``label`` (one ref per direction) against the reference."""
    layer = ds.sel(layer=label)
    units = int(layer["n_units"])
    for d, ref in enumerate(refs):
        one = layer.isel(direction=d, unit=slice(0, units))
        close(one["h"], ref["h"], f"{label} h dir {d}")
        close(one["h_0"], ref["h0"], f"{label} h_0")
        close(one["h_n"], ref["hn"], f"{label} h_n")
        if "c" in ref:
            close(one["c_0"], ref["c0"], f"{label} c_0")
            close(one["c_n"], ref["cn"], f"{label} c_n")
        for name in names:
            close(one[name], ref[name], f"{label} {name} dir {d}")


def unchanged(model, *inputs):
    """The model's output with and without recording; nothing left on any layer."""
    plain = keras.ops.convert_to_numpy(model(*inputs))
    before = {id(x): set(vars(x)) for x in model._flatten_layers(include_self=True)}
    with seqacts.record(model, internals=True) as rec:
        recorded = keras.ops.convert_to_numpy(model(*inputs))
    np.testing.assert_array_equal(plain, recorded)
    for x in model._flatten_layers(include_self=True):
        assert set(vars(x)) == before[id(x)], f"{x.name} keeps {set(vars(x)) - before[id(x)]}"
    return rec.to_dataset()


LSTM_NAMES = ["c", "input_gate", "forget_gate", "cell_gate", "output_gate"]
GRU_NAMES = ["update_gate", "reset_gate", "new_gate"]


def test_sequential_lstm_gru_masking():
    x = data(pad={1: 4, 2: 6})
    model = keras.Sequential([keras.Input((7, 4)), L.Masking(0.0),
                              L.LSTM(5, return_sequences=True, name="lstm_1"), L.GRU(3)])
    assert seqacts.layers(model) == ["lstm_1", "gru"]
    ds = unchanged(model, x)
    mask = np.any(x != 0, axis=-1)
    np.testing.assert_array_equal(ds["mask"].sel(layer="lstm_1"), mask.astype(np.int8))
    lstm, gru = model.layers[1], model.layers[2]
    ref = run("LSTM", x, weights(lstm), mask=mask)
    compare(ds, "lstm_1", [ref], LSTM_NAMES)
    compare(ds, "gru", [run("GRU", ref["h"], weights(gru), mask=mask)], GRU_NAMES)
    assert list(ds["kind"].values) == ["LSTM", "GRU"]
    assert ds.attrs["keras_backend"] == BACKEND
    # a masked step carries the state: h there is the last unmasked step's
    np.testing.assert_array_equal(ds["h"].sel(layer="lstm_1").values[1, 0, 5],
                                  ds["h"].sel(layer="lstm_1").values[1, 0, 3])


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_variants_backwards(reset_after):
    x = data()
    model = keras.Sequential([keras.Input((7, 4)), L.GRU(3, reset_after=reset_after,
                                                         return_sequences=True, go_backwards=True)])
    ds = unchanged(model, x)
    ref = run("GRU", x, weights(model.layers[0]), backwards=True, reset_after=reset_after)
    compare(ds, model.layers[0].name, [ref], GRU_NAMES)
    text = "reset_after=True" if reset_after else "reset_after=False"
    assert text in ds["new_gate"].attrs["description"]


def test_custom_activations_simple_rnn_and_lstm():
    x = data()
    model = keras.Sequential([
        keras.Input((7, 4)),
        L.SimpleRNN(4, activation="relu", return_sequences=True, name="rnn"),
        L.LSTM(3, activation="relu", recurrent_activation="hard_sigmoid", name="lstm"),
    ])
    ds = unchanged(model, x)
    ref = run("SimpleRNN", x, weights(model.layers[0]), act="relu")
    compare(ds, "rnn", [ref], ["preactivation"])
    ref2 = run("LSTM", ref["h"], weights(model.layers[1]), act="relu", rec="hard_sigmoid")
    compare(ds, "lstm", [ref2], LSTM_NAMES)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
def test_bidirectional(merge_mode):
    x = data(pad={0: 5})
    model = keras.Sequential([keras.Input((7, 4)), L.Masking(0.0), L.Bidirectional(
        L.LSTM(3, return_sequences=merge_mode != "sum"), merge_mode=merge_mode, name="bi")])
    ds = unchanged(model, x)
    bi = model.layers[1]
    mask = np.any(x != 0, axis=-1)
    refs = [run("LSTM", x, weights(bi.forward_layer), mask=mask),
            run("LSTM", x, weights(bi.backward_layer), mask=mask, backwards=True)]
    compare(ds, "bi", refs, LSTM_NAMES)
    assert list(ds["direction"].values) == ["forward", "backward"]


def test_stacked_cells_labels():
    x = data()
    model = keras.Sequential([keras.Input((7, 4)), L.RNN(L.StackedRNNCells(
        [L.LSTMCell(3), L.GRUCell(2)]), return_sequences=True, name="stack")])
    assert seqacts.layers(model) == ["stack.l0", "stack.l1"]
    ds = unchanged(model, x)
    cells = model.layers[0].cell.cells
    r0 = run("LSTM", x, weights(cells[0]))
    compare(ds, "stack.l0", [r0], LSTM_NAMES)
    compare(ds, "stack.l1", [run("GRU", r0["h"], weights(cells[1]))], GRU_NAMES)


def test_functional_initial_state_return_state():
    x = data()
    inp, h_in, c_in = keras.Input((7, 4)), keras.Input((3,)), keras.Input((3,))
    out, h, c = L.LSTM(3, return_state=True, name="lstm")(inp, initial_state=[h_in, c_in])
    model = keras.Model([inp, h_in, c_in], [out, h, c])
    h0, c0 = RNG.normal(size=(2, 3, 3)).astype("float32")
    with seqacts.record(model, internals=True) as rec:
        model([x, h0, c0])
    ds = rec.to_dataset()
    compare(ds, "lstm", [run("LSTM", x, weights(model.get_layer("lstm")), h0=h0, c0=c0)],
            LSTM_NAMES)


def test_subclassed_nested_embedding_mask_zero():
    class Model(keras.Model):
        def __init__(self):
            super().__init__()
            self.encoder = keras.Sequential([L.Embedding(10, 4, mask_zero=True),
                                             L.LSTM(3, return_sequences=True)], name="encoder")
            self.head = L.Dense(1)

        def call(self, tokens):
            return self.head(self.encoder(tokens))

    tokens = np.array([[3, 5, 1, 0, 0], [2, 4, 6, 8, 9]])
    model = Model()
    model(tokens)
    label = seqacts.layers(model)[0]
    assert label.startswith("encoder/lstm")
    ds = unchanged(model, tokens)
    emb = np.asarray(model.encoder.layers[0].get_weights()[0], np.float64)[tokens]
    lstm = model.encoder.layers[1]
    compare(ds, label, [run("LSTM", emb, weights(lstm), mask=tokens != 0)], LSTM_NAMES)


def test_stateful_state_before_and_after():
    x = data(n=2)
    model = keras.Sequential([keras.Input((7, 4), batch_size=2),
                              L.GRU(3, stateful=True, return_sequences=True, name="gru")])
    with seqacts.record(model) as rec:
        model(x[:, :4])
        model(x[:, 4:])
    ds = rec.to_dataset()
    w = weights(model.layers[0])
    first = run("GRU", x[:, :4], w)
    second = run("GRU", x[:, 4:], w, h0=first["hn"])
    close(ds["h_0"].values[2:, 0, 0], first["hn"], "second call starts from the first's end")
    close(ds["h_n"].values[2:, 0, 0], second["hn"], "h_n after the second call")
    close(ds["h"].values[:2, 0, 0, :4], first["h"], "first call")


def test_exact_outputs_per_backend():
    """The re-run equals the layer's own output bitwise on every backend (README, 'Keras')."""
    x = data(n=4, steps=20, pad={1: 14})
    plain = keras.Sequential([keras.Input((20, 4)), L.LSTM(8, return_sequences=True),
                              L.GRU(8, return_sequences=True), L.SimpleRNN(8)])
    masked = keras.Sequential([
        keras.Input((20, 4)), L.Masking(0.0), L.LSTM(8, return_sequences=True),
        L.GRU(8, reset_after=False, return_sequences=True, go_backwards=True),
        L.Bidirectional(L.GRU(8, return_sequences=True)),
        L.RNN(L.StackedRNNCells([L.LSTMCell(3), L.SimpleRNNCell(2)]))])
    for model in (plain, masked):
        ds = seqacts.extract(model, x)
        deviation = ds["keras_deviation"].values
        print(BACKEND, dict(zip(ds["layer"].values, deviation, strict=True)))
        assert (deviation == 0).all()


def test_no_recurrent_layer_and_selection_errors():
    model = keras.Sequential([keras.Input((4,)), L.Dense(2)])
    with pytest.raises(seqacts.NoRecurrentModuleError, match="no recurrent Keras layer"):
        seqacts.extract(model, np.zeros((1, 4), "float32"))
    rnn = keras.Sequential([keras.Input((3, 2)), L.LSTM(2, name="lstm")])
    with pytest.raises(seqacts.LayerSelectionError, match="available: lstm"):
        seqacts.record(rnn, layers="nope")
    with pytest.raises(seqacts.UnsupportedModelError, match="PyTorch-only"):
        seqacts.extract(rnn, np.zeros((1, 3, 2), "float32"),
                        edits=seqacts.ablate("lstm", units=[0]))
    with pytest.raises(seqacts.OptionError, match="internals"):
        seqacts.record(rnn, internals=["reset_gate"])
    with pytest.raises(seqacts.OptionError, match="chain"):  # not silently ignored
        seqacts.extract(rnn, np.zeros((1, 3, 2), "float32"), chain="lstm")
    with pytest.raises(seqacts.UnsupportedModelError, match="write_stream"):
        seqacts.extract_to_netcdf(rnn, [np.zeros((1, 3, 2), "float32")], "unused.nc",
                                  progress=False)


def test_nested_records_and_exceptions_clean_up():
    x = data()
    model = keras.Sequential([keras.Input((7, 4)), L.LSTM(3, name="lstm")])
    layer = model.layers[0]
    with seqacts.record(model) as outer:
        with seqacts.record(model, internals=["c"]) as inner:
            model(x)
        model(x)
    assert "call" not in vars(layer) and "call" not in vars(model)
    assert inner.to_dataset().sizes["sample"] == 3
    assert outer.to_dataset().sizes["sample"] == 6
    with pytest.raises(ValueError, match="boom"):
        with seqacts.record(model):
            raise ValueError("boom")
    assert "call" not in vars(layer) and "call" not in vars(model)
    with seqacts.record(model) as rec:
        model.predict(x, verbose=0)  # compiled on tensorflow and jax: traced, not run
    if BACKEND == "torch":  # the torch backend's predict runs the layers eagerly
        assert rec.to_dataset().sizes["sample"] == 3
    else:
        with pytest.raises(seqacts.RecordingError, match="only traced"):
            rec.to_dataset()
    assert "call" not in vars(layer)


def test_dataset_round_trips_and_analyses(tmp_path):
    x = data(pad={1: 5})
    model = keras.Sequential([keras.Input((7, 4)), L.Masking(0.0), L.LSTM(3)])
    ds = seqacts.extract(model, x, internals=True)
    path = seqacts.write_stream([ds], tmp_path / "acts.nc")
    back = seqacts.open_dataset(path).load()
    xr.testing.assert_allclose(back[list(ds.data_vars)], ds[list(ds.data_vars)])
    assert seqacts.summary_table(back) is not None


@pytest.mark.skipif(os.environ.get("SEQACTS_KERAS_CLI") != "1", reason="CLI: one backend")
def test_cli_keras_file(tmp_path):
    x = data(n=5)
    model = keras.Sequential([keras.Input((7, 4)), L.LSTM(3, return_sequences=True), L.GRU(2)])
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "seqacts.cli", "extract", str(tmp_path / "model.keras"),
           "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "acts.nc"),
           "--internals"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    back = seqacts.open_dataset(tmp_path / "acts.nc").load()
    expected = seqacts.extract(model, x, internals=True)
    np.testing.assert_array_equal(back["h"].values, expected["h"].values)
    lam = keras.Sequential([keras.Input((7, 4)), L.Lambda(lambda v: v * 2), L.LSTM(3)])
    lam.save(tmp_path / "lambda.keras")
    cmd[cmd.index(str(tmp_path / "model.keras"))] = str(tmp_path / "lambda.keras")
    cmd[cmd.index(str(tmp_path / "acts.nc"))] = str(tmp_path / "lambda.nc")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("seqacts")]
    assert len(ours) == 1 and "Lambda" in ours[0], done.stderr  # (tensorflow logs its own)
    assert not Path(tmp_path / "lambda.nc").exists()


def test_warnings_free_plain_run():
    x = data()
    model = keras.Sequential([keras.Input((7, 4)), L.LSTM(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", seqacts.RecordingWarning)
        seqacts.extract(model, x)
