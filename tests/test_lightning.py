"""Recording during training: seqacts.lightning's callbacks in a tiny real ``Trainer.fit`` (CPU).

``RecordStates`` writes one netCDF file with an ``epoch`` dim; each epoch's values are checked
against the float64 reference (tests/reference.py) run on a copy of the weights taken at the
end of that epoch by a plain callback, and training itself is checked to be unchanged.
``LabelCalls`` marks the sanity-check, training and validation calls of an enclosing record().
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from reference import reference_stack
from torch import nn

import seqacts

pl = pytest.importorskip("pytorch_lightning")
from seqacts.lightning import LabelCalls, RecordStates  # noqa: E402


class Forecaster(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(3, 5, num_layers=2, batch_first=True, dropout=0.3)
        self.head = nn.Linear(5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])

    def training_step(self, batch, _):  # noqa: ANN001, ANN201
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def validation_step(self, batch, _):  # noqa: ANN001, ANN201
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):  # noqa: ANN201
        return torch.optim.SGD(self.parameters(), lr=0.5)


class Snapshots(pl.Callback):
    """The weights at the end of each training epoch (a plain callback, not seqacts)."""

    def __init__(self) -> None:
        self.rnn: dict[int, nn.LSTM] = {}

    def on_train_epoch_end(self, trainer, pl_module):  # noqa: ANN001, ANN201
        self.rnn[trainer.current_epoch] = copy.deepcopy(pl_module.rnn).double()


def data(n: int = 8, seed: int = 0) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 6, 3, generator=g), torch.randn(n, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)


def fit(callbacks: list, epochs: int = 3) -> Forecaster:
    torch.manual_seed(0)
    module = Forecaster()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_train_batches=2, limit_val_batches=1,
                         num_sanity_val_steps=1, deterministic=True, callbacks=callbacks)
    trainer.fit(module, data(), data(4, seed=1))
    return module


def test_record_states_writes_one_file_per_epoch_equal_to_the_reference(tmp_path):
    probe = torch.randn(3, 6, 3, generator=torch.Generator().manual_seed(5))
    path = tmp_path / "states.nc"
    snaps = Snapshots()
    trained = fit([snaps, RecordStates(probe, path=path, internals=True)])
    plain = fit([])  # the same fit without the callback: training is unchanged
    for a, b in zip(trained.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert trained.training  # back in the mode it was in

    ds = seqacts.open_dataset(path)
    assert ds["epoch"].values.tolist() == [0, 1, 2]
    assert dict(ds["h"].sizes) == {"epoch": 3, "sample": 3, "layer": 2, "direction": 1,
                                   "time": 6, "unit": 5}
    for epoch, rnn in snaps.rnn.items():
        ref = reference_stack(rnn, probe.double().numpy())  # eval: no dropout between layers
        for k, layer in enumerate(ref):
            got = ds.sel(epoch=epoch).isel(layer=k)
            np.testing.assert_allclose(got["h"].values[:, 0], layer["h"][:, 0], atol=1e-5)
            np.testing.assert_allclose(got["forget_gate"].values[:, 0],
                                       layer["forget_gate"][:, 0], atol=1e-5)
    assert not np.array_equal(ds["h"].isel(epoch=0).values, ds["h"].isel(epoch=2).values)

    dead = seqacts.per_epoch(ds, seqacts.dead_units)
    sat = seqacts.per_epoch(ds, seqacts.saturation)
    table = seqacts.per_epoch(ds, seqacts.summary)
    assert dead.sizes["epoch"] == sat.sizes["epoch"] == table.sizes["epoch"] == 3
    expected = seqacts.saturation(ds.isel(epoch=1, drop=True))
    np.testing.assert_array_equal(sat.isel(epoch=1).to_array().values, expected.to_array().values)


def test_record_states_every_n_epochs_and_an_existing_file(tmp_path):
    path = tmp_path / "states.nc"
    fit([RecordStates(torch.randn(2, 6, 3), path=path, every_n_epochs=2, layers="rnn.l1")], 4)
    ds = seqacts.open_dataset(path)
    assert ds["epoch"].values.tolist() == [1, 3] and ds["layer"].values.tolist() == ["rnn.l1"]
    with pytest.raises(seqacts.OutputExistsError, match="overwrite=True"):
        fit([RecordStates(torch.randn(2, 6, 3), path=path)], 1)
    with pytest.raises(seqacts.ArgumentTypeError, match="unknown option 'compresion'"):
        RecordStates(torch.randn(2, 6, 3), path=path, compresion="zlib")
    with pytest.raises(seqacts.OptionError, match="every_n_epochs"):
        RecordStates(torch.randn(2, 6, 3), path=path, every_n_epochs=0)


def test_label_calls_marks_sanity_training_and_validation_rows():
    torch.manual_seed(0)
    module = Forecaster()
    with seqacts.record(module) as rec:
        trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_train_batches=2,
                             limit_val_batches=1, num_sanity_val_steps=1,
                             callbacks=[LabelCalls(rec)])
        trainer.fit(module, data(), data(4, seed=1))
    assert rec.labels == {}
    ds = rec.to_dataset()
    calls = [(str(p), int(e)) for p, e in zip(ds.phase.values[::4], ds.epoch.values[::4],
                                              strict=True)]
    assert calls == [("sanity", 0), ("train", 0), ("train", 0), ("validation", 0),
                     ("train", 1), ("train", 1), ("validation", 1)]
    assert ds.model_call.values[::4].tolist() == list(range(7))
    assert ds.sizes["sample"] == 7 * 4
