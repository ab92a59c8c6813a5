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

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from ..capture.extract import extract
from ..capture.recorder import Recorder
from ..errors import (
    IncompleteStreamWarning,
    InputError,
    OptionError,
    OutputExistsError,
    StreamMismatchError,
)

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
    PACK_RANGES,
    SQUASHING_KINDS,
    Writer,
    _rows,
    create,
)


def _model_hash(model: nn.Module) -> str:
    """sha1 of every parameter and buffer (names, shapes, dtypes and values)."""
    digest = hashlib.sha1()
    for name, value in model.state_dict().items():
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _squashes(ds: xr.Dataset, model: nn.Module) -> bool:
    """Whether every layer's h lies in [-1, 1] (tanh outputs, no projection)."""
    for kind, module, n_units, n_cell in zip(
        ds["kind"].values, ds["module"].values, ds["n_units"].values, ds["n_cell_units"].values,
        strict=True,
    ):
        if kind == "RNNCell":
            kind = "RNN_TANH" if model.get_submodule(str(module)).nonlinearity == "tanh" else ""
        if kind not in SQUASHING_KINDS or n_units != n_cell:
            return False
    return True


def _fingerprint(model: nn.Module, rec: Recorder, modules: Any, compression: str | None,
                 pack: str | None, first_sample: int, time: Any = None) -> dict[str, Any]:
    cls = type(model)
    labels = None if time is None else hashlib.sha1(
        np.asarray(pd.Index(time).astype(str)).astype("U").tobytes()).hexdigest()
    return {
        "layers": [s.label for s in rec.specs],
        "internals": list(rec.internals),
        "modules": [modules] if isinstance(modules, str) else None if modules is None else list(
            modules),
        "compression": compression,
        "pack": pack,
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "model_weights": _model_hash(model),
        "training": model.training,
        "first_sample": first_sample,
        "time_labels": labels,
    }


def _check_resume(path: Path, expected: dict[str, Any]) -> bool:
    """Raise unless ``path`` is a stream written with ``expected``; return whether complete."""
    try:
        with LOCK, netCDF4.Dataset(path) as nc:
            found, complete = json.loads(nc.getncattr(OPTIONS)), bool(nc.getncattr(COMPLETE))
    except OSError as err:
        raise OSError(f"resume: cannot read {path} ({err}); if another process is writing it, "
                      "wait for it (HDF5 locks open files)") from err
    except (AttributeError, ValueError) as err:
        raise StreamMismatchError(f"resume: {path} is not a seqacts stream file ({err})") from err
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


def extract_to_netcdf(
    model: nn.Module,
    batches: Iterable[Any],
    path: str | os.PathLike,
    *,
    layers: str | Iterable[str] | None = None,
    internals: bool | Collection[str] = False,
    modules: str | Iterable[str] | None = None,
    inputs: Callable[[Any], Any] | None = None,
    time: Sequence[Any] | None = None,
    compression: str | None = None,
    pack: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Run ``model`` over ``batches`` and append each batch's activations to one netCDF file.

    Memory stays that of one batch. After every batch the file is synced and its committed
    sample count updated, so a killed run leaves every finished batch readable and
    ``resume=True`` finishes it. Open the result with :func:`seqacts.open_dataset` (lazy, Dask)
    or ``xr.open_dataset``; it equals ``xr.concat`` of per-batch :func:`seqacts.extract` results
    (``sample`` numbered 0..N-1, ``time`` padded with NaN to the longest batch).

    Parameters
    ----------
    model : torch.nn.Module
        The model, as for :func:`seqacts.extract`.
    batches : iterable
        A DataLoader, generator, list...: each item a tensor, a tuple/list of positional
        arguments or a dict of keyword arguments (after ``inputs``).
    path : str or path-like
        The netCDF4 file to write.
    layers, internals, modules
        As for :func:`seqacts.extract`.
    inputs : callable, optional
        Maps a batch to the model's arguments, e.g. ``lambda b: (b[0],)`` for ``(x, y)`` batches.
    time : sequence, optional
        Labels for the ``time`` coordinate (e.g. a ``pandas.DatetimeIndex``), one per step of
        the longest batch; the file's ``time`` then has exactly these labels.
    compression : {None, "zlib", "zstd"}, default None
        Lossless compression of every per-sample variable (zstd with byte shuffle). Float
        activations barely compress (ratio ~1.1-1.2) and zlib is ~15x slower; see the README.
    pack : {None, "int16"}, default None
        Store variables with a known range (gates; ``h``/``h_n`` of tanh layers without
        projection) as int16 with ``scale_factor``/``add_offset`` (xarray decodes them):
        half the size, absolute error <= 1.6e-5. Other variables stay float.
    overwrite : bool, default False
        Replace an existing ``path``; the new file is written under a temporary name and
        renamed at the end, so a failure keeps the old file.
    resume : bool, default False
        Continue an interrupted file: the first batches already committed are skipped (not
        run). The file must have been written with the same layers, options and model weights
        (else :class:`StreamMismatchError`). A missing file starts afresh.
    progress : bool, default True
        Show a tqdm bar in samples (with MB/s).

    Returns
    -------
    pathlib.Path
        ``path``, holding ``h`` (sample, layer, direction, time, unit) and the rest of the
        :func:`seqacts.extract` schema, plus ``seqacts_stream_*`` bookkeeping attributes.
    """
    if compression not in (None, *COMPRESSIONS):
        raise OptionError(f"compression: expected None, 'zlib' or 'zstd', got {compression!r}")
    if pack not in (None, "int16"):
        raise OptionError(f"pack: expected None or 'int16', got {pack!r}")
    opts = dict(layers=layers, internals=internals, modules=modules, inputs=inputs,
                compression=compression, pack=pack, time=time)
    return stream(model, batches, Path(path), opts, overwrite=overwrite, resume=resume,
                  progress=progress)


def stream(model: nn.Module, batches: Iterable[Any], path: Path, opts: dict[str, Any], *,
           overwrite: bool = False, resume: bool = False, progress: bool = True,
           first_sample: int = 0) -> Path:
    """:func:`extract_to_netcdf` for samples numbered from ``first_sample`` (one shard)."""
    if overwrite and resume:
        raise OptionError("overwrite=True and resume=True contradict each other; pick one")
    rec = Recorder(model, layers=opts["layers"], internals=opts["internals"],
                   modules=opts["modules"])  # resolves names; fails early on a bad one
    expected = _fingerprint(model, rec, opts["modules"], opts["compression"], opts["pack"],
                            first_sample, opts.get("time"))
    writer: Writer | None = None
    if path.exists() and not (overwrite or resume):
        raise OutputExistsError(
            f"{path} exists; pass overwrite=True to replace it, or resume=True to finish an "
            "interrupted stream into it")
    if path.exists() and resume:
        if _check_resume(path, expected):
            return path
        try:
            writer = Writer(path)
        except OSError as err:
            raise OSError(f"resume: cannot append to {path} ({err}); HDF5 locks a file that "
                          "another process has open, e.g. in xarray: close it first") from err
    target = path.with_name(f".{path.name}.tmp-{os.getpid()}") if overwrite else path
    skip = writer.batches if writer else 0
    bar = tqdm(total=_total_samples(batches), initial=writer.committed["sample"] if writer else 0,
               unit=" samples", desc=path.name, disable=not progress, dynamic_ncols=True)
    sized, started, nbytes, i = hasattr(batches, "__len__"), time.perf_counter(), 0, -1
    try:
        for i, batch in enumerate(batches):
            if i < skip:
                continue
            args, kwargs = _model_args(batch, opts["inputs"])
            ds = extract(model, *args, layers=opts["layers"], internals=opts["internals"],
                         modules=opts["modules"], **kwargs)
            if opts.get("time") is not None:
                ds = _label_time(ds, opts["time"])
            if writer is None:
                _create_atomic(target, ds, expected, model)
                writer = Writer(target)
            nbytes += writer.append(ds)
            if bar.total is None and sized:  # estimate from the first batch's size
                bar.total = len(batches) * ds.sizes["sample"]  # type: ignore[arg-type]
            bar.set_postfix_str(f"{nbytes / 1e6 / (time.perf_counter() - started):.0f} MB/s",
                                refresh=False)
            bar.update(ds.sizes["sample"])
        if writer is None:
            raise InputError("batches: the iterable yielded no batch; nothing to write")
        if i + 1 < skip:
            raise StreamMismatchError(
                f"resume: {path} already holds {skip} batches but batches yielded only {i + 1}; "
                "pass the same batches, in the same order")
        writer.finish()
        if overwrite:
            os.replace(target, path)
    except BaseException:
        if writer is not None:
            writer.close()
        if overwrite:
            target.unlink(missing_ok=True)
        raise
    finally:
        bar.total = bar.n
        bar.close()
    return path


def _create_atomic(path: Path, ds: xr.Dataset, options: dict[str, Any], model: nn.Module) -> None:
    """Create the empty file under a temporary name and rename it: never a half-made file."""
    packed = {}
    if options["pack"]:
        squash = _squashes(ds, model)
        packed = {n: r for n, r in PACK_RANGES.items()
                  if n in ds.data_vars and (squash or n not in ("h", "h_n"))}
        if not packed:
            warnings.warn("pack='int16': no recorded variable has a known range (gates, or h of "
                          "tanh layers); storing float", stacklevel=4)
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    try:
        create(tmp, ds.isel(sample=slice(0, 0)), options, packed, _rows(ds))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
