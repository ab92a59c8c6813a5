"""PyTorch Lightning callbacks: record a fixed probe batch over training, label the calls of a fit.

:class:`RecordStates` records what the model computes on one fixed probe batch at the end of
chosen training epochs into ONE netCDF file with an ``epoch`` dim, so how units die or saturate
over training can be read with the analyses, one epoch at a time (``ds.sel(epoch=3)``, or
:func:`seqacts.per_epoch`). :class:`LabelCalls` labels the ``model(...)`` calls an enclosing
:func:`seqacts.record` sees during ``Trainer.fit`` with the phase (``sanity``, ``train``,
``validation``) and epoch, so they never mix unmarked.

Needs ``lightning`` or ``pytorch-lightning`` (``pip install 'seqacts[lightning]'``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import xarray as xr
from torch import nn

from .capture.recorder import Recorder
from .errors import (
    ArgumentTypeError,
    MissingDependencyError,
    OptionError,
    OutputExistsError,
)
from .options import Options


def _lightning() -> Any:
    """The Lightning package the user imported already, else pytorch-lightning, else lightning
    (a callback must subclass the ``Callback`` of the package whose ``Trainer`` runs it)."""
    names = ["pytorch_lightning", "lightning.pytorch"]
    if "lightning" in sys.modules and "pytorch_lightning" not in sys.modules:
        names.reverse()
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError(
        "seqacts.lightning needs PyTorch Lightning: pip install 'seqacts[lightning]' (or "
        "pip install pytorch-lightning)")


_PL = _lightning()
Callback: Any = _PL.Callback
Trainer = Any  # lightning's Trainer and LightningModule, as the hooks receive them
LightningModule = Any

__all__ = ["LabelCalls", "RecordStates"]

#: The (sample, layer) coordinates of a probe recording that may change from epoch to epoch.
PER_EPOCH_COORDS = ("length", "nonfinite")
#: The options of :func:`seqacts.record` a probe recording takes.
RECORD_OPTIONS = ("layers", "internals", "modules", "chain", "time")


class RecordStates(Callback):  # type: ignore[misc]
    """Record a fixed probe batch at the end of every ``every_n_epochs``-th training epoch.

    The recording runs the LightningModule's ``forward`` on ``probe`` in eval mode under
    ``torch.no_grad()``, with the random number generators' states saved and restored, then
    puts every module back in the mode it was in: training goes on exactly as without the
    callback. After each recorded epoch the file at ``path`` holds every epoch so far (written
    under a temporary name and renamed into place, so a crash keeps the previous epochs).

    Parameters
    ----------
    probe : tensor, tuple or dict
        The model's input: a tensor (one positional argument), a tuple/list of positional
        arguments or a dict of keyword arguments; moved to the module's device.
    path : str or path-like
        The netCDF file to write; an existing file is replaced only with ``overwrite=True``.
    every_n_epochs : int, default 1
        Record after epochs ``n - 1, 2n - 1, ...`` (as Lightning's ``ModelCheckpoint``).
    overwrite : bool, default False
        Replace a file already at ``path`` when the fit starts.
    **options
        Passed to :func:`seqacts.record`: ``layers``, ``internals`` (``True`` for
        :func:`seqacts.saturation`), ``modules``, ``chain``, ``time``.

    Attributes
    ----------
    epochs : list of int
        The epochs recorded in this fit.
    """

    def __init__(self, probe: Any, *, path: str | os.PathLike, every_n_epochs: int = 1,
                 overwrite: bool = False, **options: Any) -> None:
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise OptionError(f"every_n_epochs: expected an int >= 1, got {every_n_epochs!r}")
        self.probe = probe
        self.path = Path(path)
        self.every_n_epochs = every_n_epochs
        self.overwrite = overwrite
        unknown = sorted(set(options) - set(RECORD_OPTIONS))
        if unknown:
            raise ArgumentTypeError(
                f"RecordStates: unknown option {', '.join(map(repr, unknown))}; options are "
                f"{', '.join(RECORD_OPTIONS)}")
        self.options = Options(**options)
        self.epochs: list[int] = []

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and self.path.exists() and not self.overwrite:
            raise OutputExistsError(
                f"RecordStates: {self.path} exists; pass overwrite=True to replace it, or "
                "another path")
        self.epochs = []

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = int(trainer.current_epoch)
        if (epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        ds = record_probe(pl_module, self.probe, self.options)
        self.epochs.append(epoch)
        append_epoch(self.path, ds, epoch, first=len(self.epochs) == 1)


def record_probe(model: nn.Module, probe: Any, options: Options) -> xr.Dataset:
    """What ``model`` computes on ``probe``, recorded in eval mode without changing the model
    (modes, random number generators and gradients are as before)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    args, kwargs = _arguments(_to(probe, device))
    modes = [(m, m.training) for m in model.modules()]
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            with Recorder(model, options) as rec:
                model(*args, **kwargs)
            return rec.to_dataset()  # its RecordingWarnings reach the user (once per message)
    finally:
        for module, mode in modes:
            module.training = mode


def append_epoch(path: Path, ds: xr.Dataset, epoch: int, *, first: bool) -> None:
    """Write ``path`` anew holding its epochs so far (none when ``first``) and ``ds`` as
    ``epoch``; under a temporary name renamed over ``path``, so a failure keeps the old file."""
    one = ds.expand_dims(epoch=[epoch])
    for name in PER_EPOCH_COORDS:
        if name in one.coords:
            one[name] = one[name].expand_dims(epoch=[epoch])
    if not first and path.exists():
        with xr.open_dataset(path) as old:
            one = xr.concat([old.load(), one], dim="epoch", data_vars="all", coords="minimal",
                            compat="override", join="outer", combine_attrs="override")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        one.to_netcdf(tmp, engine="netcdf4")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, device) for v in value)
    return value


def _arguments(probe: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(probe, Mapping):
        return (), dict(probe)
    if isinstance(probe, (tuple, list)):
        return tuple(probe), {}
    return (probe,), {}


class LabelCalls(Callback):  # type: ignore[misc]
    """Label the calls an enclosing :func:`seqacts.record` sees during ``Trainer.fit``.

    Sets ``phase`` (``"sanity"``, ``"train"``, ``"validation"``) and ``epoch`` with
    :meth:`seqacts.Recorder.label` as Lightning enters each loop, and restores the labels in
    force before when the fit ends::

        with seqacts.record(module) as rec:
            trainer = Trainer(callbacks=[LabelCalls(rec)], ...)
            trainer.fit(module, data)
        ds = rec.to_dataset()  # ds.phase, ds.epoch along sample

    Parameters
    ----------
    recorder : seqacts.Recorder
        The recorder of the enclosing ``record()`` block.
    """

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._before: dict[str, Any] | None = None

    def _set(self, phase: str, trainer: Trainer) -> None:
        if self._before is None:
            self._before = self.recorder.labels
        self.recorder.label(phase=phase, epoch=int(trainer.current_epoch))

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._set("sanity", trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._set("train", trainer)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._set("validation", trainer)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":  # training goes on
            self._set("train", trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._before is not None:
            self.recorder.label(**{k: None for k in self.recorder.labels})
            self.recorder.label(**self._before)
            self._before = None

