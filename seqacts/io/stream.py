"""Streaming extraction to netCDF: one growing file, bounded memory, crash-safe resume.

Each batch runs through :func:`seqacts.extract` and is appended along the unlimited ``sample``
dimension of one netCDF4 file, which is then synced. A batch is *committed* once the attribute
counting committed samples has been synced after it, so a process killed at any point (even
``kill -9``) leaves a file holding every committed batch, and ``resume=True`` continues it.
netCDF4-python writes the file directly (``Dataset.to_netcdf(mode="a")`` cannot append along a
dimension) following xarray's conventions, so ``xr.open_dataset`` reads back the same dataset
that :func:`seqacts.extract` returns in memory.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from ..capture.editing import digest
from ..capture.extract import extract_with
from ..capture.numpy_inputs import numpy_to_tensors
from ..capture.provenance import model_class, model_weights
from ..capture.recorder import Recorder
from ..errors import (
    CorruptFileError,
    IncompleteStreamWarning,
    InputError,
    OptionError,
    OutputExistsError,
    StreamMismatchError,
    UnsupportedModelError,
)
from ..keras import is_keras_model
from ..options import Options
from ..signatures import keywords_from
from .batchlog import batch_entry, difference, is_empty
from .destination import Output, check_destination
from .integrity import damaged_metadata, explain_unreadable, is_damage, repair_truncated, verify
from .lock import StreamLock
from .packing import PACK_RANGES
from .write import numbered

__all__ = [
    "COMPRESSIONS",
    "PACK_RANGES",
    "IncompleteStreamWarning",
    "StreamMismatchError",
    "extract_to_netcdf",
]

from .ncfile import (
    COMPLETE,
    COMPRESSIONS,
    LOCK,
    OPTIONS,
    Writer,
    read_log,
)


def fingerprint(model: nn.Module, rec: Recorder, opts: Options,
                first_sample: int) -> dict[str, Any]:
    """What a stream file records about how it was written; resume must match all of it."""
    labels = None if opts.time is None else hashlib.sha1(
        np.asarray(pd.Index(opts.time).astype(str)).astype("U").tobytes()).hexdigest()
    found = {
        "layers": [s.label for s in rec.specs],
        "internals": list(rec.internals),
        "modules": None if opts.modules is None else list(opts.modules),
        "chain": None if opts.chain is None else sorted(rec.declared),
        "compression": opts.compression,
        "pack": opts.pack,
        "model_class": model_class(model),
        "model_weights": model_weights(model),
        "training": model.training,
        "first_sample": first_sample,
        "time_labels": labels,
        "checksums": opts.checksums,
    }
    if opts.edits:  # only then: files written without edits keep the fingerprint they had
        found["edits"] = digest(opts.edits)
    return found


def check_resume(path: Path, expected: dict[str, Any]) -> bool:
    """Raise unless ``path`` is a stream written with ``expected``; return whether complete."""
    if repair_truncated(path):
        warnings.warn(f"resume: {path} was cut short by a failed write; its committed batches "
                      "read back intact (checksums verified), continuing after them",
                      stacklevel=4)
    try:
        with LOCK, netCDF4.Dataset(path) as nc:
            found, complete = json.loads(nc.getncattr(OPTIONS)), bool(nc.getncattr(COMPLETE))
    except OSError as err:
        raise explain_unreadable(path, err, "resume") from err
    except (AttributeError, ValueError, RuntimeError) as err:
        if is_damage(err):
            raise damaged_metadata(path, err, "resume") from err
        raise StreamMismatchError(f"resume: {path} is not a seqacts stream file ({err})") from err
    expected = {**expected, "edits": expected.get("edits")}  # a file with edits, a call without
    diff = [f"{k}: file has {found.get(k)!r}, this call {v!r}" for k, v in expected.items()
            if found.get(k) != v and k != "model_weights"]
    if found.get("model_weights") != expected["model_weights"]:
        diff.append("model_weights: the model's parameters or buffers differ from the file's")
    if diff:
        raise StreamMismatchError(
            f"resume: {path} was written with other options or another model ("
            + "; ".join(diff) + "). Pass the same model and options, or overwrite=True to start over"
        )
    return complete


def _label_time(ds: xr.Dataset, labels: Any) -> xr.Dataset:
    """Give a batch the whole label sequence as ``time`` (shorter batches: NaN-padded)."""
    if ds.sizes["time"] > len(labels):
        raise InputError(f"time: {len(labels)} labels, but a batch has {ds.sizes['time']} "
                         "steps; pass one label per step of the longest batch")
    labels = pd.Index(labels)
    ds = ds.assign_coords(time=labels[: ds.sizes["time"]])
    return ds if ds.sizes["time"] == len(labels) else ds.reindex(time=labels)


def _model_args(batch: Any, inputs: Callable[[Any], Any] | None) -> tuple[tuple, dict]:
    if inputs is not None:
        batch = inputs(batch)
    if isinstance(batch, dict):
        return (), batch
    return (tuple(batch), {}) if isinstance(batch, (tuple, list)) else ((batch,), {})


def _total_samples(batches: Iterable[Any]) -> int | None:
    """Samples a DataLoader will yield, when it says so."""
    sampler, size = getattr(batches, "sampler", None), getattr(batches, "batch_size", None)
    if sampler is None or not size or not hasattr(sampler, "__len__"):
        return None
    n = len(sampler)
    return n - n % size if getattr(batches, "drop_last", False) else n


@keywords_from(Options)
def extract_to_netcdf(
    model: nn.Module,
    batches: Iterable[Any],
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    **options: Any,
) -> Path:
    """Run ``model`` over ``batches`` and append each batch's activations to one netCDF file.

    Memory stays that of one batch. Each batch is written and synced, then counted as
    committed in a second synced step, so a killed run or a failed write (disk full, file-size
    limit: :class:`~seqacts.errors.StreamWriteError` with its ``errno``) leaves every committed
    batch readable and ``resume=True`` finishes it. A lock file next to ``path`` keeps a second
    writer out (:class:`~seqacts.errors.StreamBusyError` names the process holding it). The
    destination is checked before any batch runs; a batch of 0 samples is logged and skipped.
    Open the result with :func:`seqacts.open_dataset` (lazy, Dask) or ``xr.open_dataset``; it
    equals ``xr.concat`` of per-batch :func:`seqacts.extract` results (``sample`` numbered
    0..N-1, ``time`` padded with NaN to the longest batch, ``model_call`` numbered on across
    the batches).

    Parameters
    ----------
    model : torch.nn.Module
        The model, as for :func:`seqacts.extract`.
    batches : iterable
        A DataLoader, generator, list...: each item a tensor, a tuple/list of positional
        arguments or a dict of keyword arguments (after ``inputs``).
    path : str or path-like
        The netCDF4 file to write.
    overwrite : bool, default False
        Replace an existing ``path``; the new file is written under a temporary name and
        renamed at the end, so a failure keeps the old file.
    resume : bool, default False
        Continue an interrupted file: the first batches already committed are skipped (not
        run) after checking each against the file's batch log (sample count, input shapes,
        sha256 of the inputs) and reading back every committed chunk. The file must have been
        written with the same layers, options, edits and model weights (else
        :class:`StreamMismatchError`). A missing file starts afresh.
    progress : bool, default True
        Show a tqdm bar in samples (with MB/s).
    layers, internals, modules, cells, chain, edits
        As for :func:`seqacts.extract`: each batch records the edited run.
    inputs : callable, optional
        Maps a batch to the model's arguments, e.g. ``lambda b: (b[0],)`` for ``(x, y)`` batches.
    time : sequence, optional
        Labels for the ``time`` coordinate (e.g. a ``pandas.DatetimeIndex``), one per step of
        the longest batch; the file's ``time`` then has exactly these labels.
    compression : {None, "zlib", "zstd"}, default None
        Lossless compression of every per-sample variable (zstd with byte shuffle). Float
        activations barely compress, and zlib is much slower than zstd; see the README's
        measurements.
    pack : {None, "int16"}, default None
        Store variables with a known range (gates; ``h``/``h_n`` of tanh layers without
        projection) as int16 with ``scale_factor``/``add_offset`` (xarray decodes them):
        half the size, absolute error <= 1.6e-5. Other variables stay float.
    checksums : bool, default True
        Store a fletcher32 checksum with every chunk (HDF5 checks it on each read, so a
        corrupted chunk raises :class:`~seqacts.errors.CorruptFileError` instead of reading
        wrong values); its write cost is measured in the README.

    Returns
    -------
    pathlib.Path
        ``path``, holding ``h`` (sample, layer, direction, time, unit) and the rest of the
        :func:`seqacts.extract` schema, plus ``seqacts_stream_*`` bookkeeping attributes.
    """
    opts = Options.of("extract_to_netcdf", options)
    return stream(model, batches, Path(path), opts, overwrite=overwrite, resume=resume,
                  progress=progress)


def stream(model: nn.Module, batches: Iterable[Any], path: Path, opts: Options, *,
           overwrite: bool = False, resume: bool = False, progress: bool = True,
           first_sample: int = 0, guard: Callable[[], None] | None = None) -> Path:
    """:func:`extract_to_netcdf` for samples numbered from ``first_sample`` (one shard).

    ``guard()``, when given, runs before each batch is written and may raise to stop the run.
    """
    if overwrite and resume:
        raise OptionError("overwrite=True and resume=True contradict each other; pick one")
    if is_keras_model(model):
        raise UnsupportedModelError(
            f"{type(model).__name__}: extract_to_netcdf takes PyTorch models only for now; "
            "stream a Keras model's batches with "
            "seqacts.write_stream(seqacts.extract(model, b) for b in batches)")
    check_destination(path)
    rec = Recorder(model, opts)  # resolves names; fails early on a bad one
    expected = fingerprint(model, rec, opts, first_sample)
    with StreamLock(path) as lock:
        return _locked(model, batches, path, opts, expected, overwrite=overwrite, resume=resume,
                       progress=progress, guard=guard, lock=lock)


@dataclass
class Committed:
    """What a stream file already holds when a run starts: nothing, or a resumed file's batches."""

    samples: int = 0
    batches: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False


def open_resumed(path: Path, expected: dict[str, Any]) -> tuple[Committed, Writer | None]:
    """Check ``path`` for ``resume`` (options, model, every committed chunk) and open it for
    appending unless it is complete."""
    complete = check_resume(path, expected)
    if not (report := verify(path)).ok:
        raise CorruptFileError(
            errno.EIO, f"resume: {path} has committed batches that no longer read back ("
            + "; ".join(report.problems) + "); rewrite it with overwrite=True", str(path))
    samples, batches, log = read_log(path)
    if complete:
        return Committed(samples, batches, log, complete=True), None
    try:
        return Committed(samples, batches, log), Writer(path)
    except OSError as err:
        raise explain_unreadable(path, err, "resume") from err


def check_skipped(path: Path, index: int, committed: Committed, entry: dict[str, Any]) -> bool:
    """Whether batch ``index`` is already in the file (raising if it differs from the logged
    one, or if a complete file is given more batches)."""
    if index < committed.batches:
        if index < len(committed.log) and (diff := difference(index, committed.log[index], entry)):
            raise StreamMismatchError(
                f"resume: {path} was written from other batches ({diff}); pass the same "
                "batches, in the same order and sizes, or overwrite=True to start over")
        return True
    if committed.complete:
        raise StreamMismatchError(
            f"resume: {path} is already complete with {committed.batches} batches "
            f"({committed.samples} samples), but batches yielded more (batch {index} and on); "
            "pass the same batches, or write the others to another file")
    return False


class Progress:
    """A tqdm bar counting samples, with the write rate in MB/s."""

    def __init__(self, batches: Iterable[Any], path: Path, initial: int, show: bool) -> None:
        self.sized = hasattr(batches, "__len__")
        self.batches = batches
        self.bar = tqdm(total=_total_samples(batches), initial=initial, unit=" samples",
                        desc=path.name, disable=not show, dynamic_ncols=True)
        self.started, self.nbytes = time.perf_counter(), 0

    def update(self, samples: int, nbytes: int) -> None:
        """Count a written batch of ``samples`` samples and ``nbytes`` bytes."""
        self.nbytes += nbytes
        if self.bar.total is None and self.sized:  # estimate from the first batch's size
            self.bar.total = len(self.batches) * samples  # type: ignore[arg-type]
        rate = self.nbytes / 1e6 / (time.perf_counter() - self.started)
        self.bar.set_postfix_str(f"{rate:.0f} MB/s", refresh=False)
        self.bar.update(samples)

    def close(self) -> None:
        """Close the bar, its total set to what was counted."""
        self.bar.total = self.bar.n
        self.bar.close()


def _locked(model: nn.Module, batches: Iterable[Any], path: Path, opts: Options,
            expected: dict[str, Any], *, overwrite: bool, resume: bool, progress: bool,
            guard: Callable[[], None] | None, lock: StreamLock | None = None) -> Path:
    if path.exists() and not (overwrite or resume):
        raise OutputExistsError(
            f"{path} exists; pass overwrite=True to replace it, or resume=True to finish an "
            "interrupted stream into it")
    committed, writer = open_resumed(path, expected) if path.exists() and resume else (
        Committed(), None)
    bar = Progress(batches, path, committed.samples, progress and not committed.complete)
    try:
        with Output(path, overwrite=overwrite, writer=writer) as out:
            seen = _write_batches(model, batches, out, opts, expected, committed, bar, guard,
                                  lock)
            if seen < committed.batches:
                raise StreamMismatchError(
                    f"resume: {path} already holds {committed.batches} batches but batches "
                    f"yielded only {seen}; pass the same batches, in the same order")
            if committed.complete:
                return path
            if out.writer is None:
                raise InputError("batches: the iterable yielded no batch; nothing to write")
            out.finish()
    finally:
        bar.close()
    return path


def _write_batches(model: nn.Module, batches: Iterable[Any], out: Output, opts: Options,
                   expected: dict[str, Any], committed: Committed, bar: Progress,
                   guard: Callable[[], None] | None, lock: StreamLock | None = None) -> int:
    """Record and append each batch not yet committed; return how many batches were seen.

    0-sample batches are logged without running the model; those before the file exists wait
    for its creation. When every batch is empty, the first one is recorded after all, for the
    variables and dims of a file of 0 samples.

    The committed sample count is recorded in ``lock`` after each batch, for readers.
    """
    pending: list[dict[str, Any]] = []
    first_empty: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    seen = 0
    calls = sum(int(e.get("calls", 0)) for e in committed.log)  # model(...) calls in the file
    for seen, batch in enumerate(batches, 1):
        args, kwargs = numpy_to_tensors(model, *_model_args(batch, opts.inputs))
        entry = batch_entry(args, kwargs)
        if check_skipped(out.path, seen - 1, committed, entry):
            continue
        if is_empty(args, kwargs):
            entry["samples"] = 0
            if out.writer is None:
                pending.append(entry)
                first_empty = first_empty or (args, kwargs)
            else:
                out.writer.append(None, entry)
            continue
        ds = extract_with(model, replace(opts, time=None), args, kwargs)
        entry["samples"] = ds.sizes["sample"]
        ds, numbered_to = numbered(ds, calls)  # model_call numbered on across the file
        entry["calls"], calls = numbered_to - calls, numbered_to
        if opts.time is not None:
            ds = _label_time(ds, opts.time)
        if guard is not None:
            guard()
        writer = out.writer
        if writer is None:
            writer = out.create(ds, expected, model)
            for empty in pending:
                writer.append(None, empty)
        bar.update(ds.sizes["sample"], writer.append(ds, entry))
        if lock is not None:
            lock.record(committed=writer.committed["sample"])
    if out.writer is None and first_empty is not None:
        ds = extract_with(model, replace(opts, time=None), *first_empty)
        if opts.time is not None:
            ds = _label_time(ds, opts.time)
        writer = out.create(ds, expected, model)
        writer.append(ds, pending[0])
        for empty in pending[1:]:
            writer.append(None, empty)
    return seen
