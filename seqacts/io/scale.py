"""Past one process: lazy Dask-backed reading of streamed files, and sharded extraction on a
``dask.distributed`` cluster.

:func:`extract_distributed` splits ``range(n_samples)`` into shards. Each worker holds one copy
of the model (scattered once), loads its shard's inputs itself with ``load(start, stop)``, and
streams them with :func:`seqacts.extract_to_netcdf` into its own ``part-<first sample>.nc``
(one writer per file: HDF5 has no parallel append). :func:`open_dataset` opens the directory as
one dataset. A shard whose worker dies is retried and resumes its own part; a second run with
``resume=True`` skips finished parts.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pickle
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from ..capture.recorder import Recorder
from ..errors import DatasetNotFoundError, InputError, OutputExistsError
from ..options import Options
from .checkedread import CheckedStore
from .chunking import disk_chunks
from .integrity import explain_unreadable
from .ncfile import (
    BATCHES,
    COMPLETE,
    LOCK,
    OPTIONS,
    PACK_RANGES,
    SAMPLES,
    SIZES,
    Writer,
    create,
    encode_entry,
    read_log,
)
from .stream import (
    IncompleteStreamWarning,
    StreamMismatchError,
    fingerprint,
    stream,
)

__all__ = ["extract_distributed", "open_dataset"]

MANIFEST = "shards.json"
READ_CACHE = 2**22  # bytes of HDF5 chunk cache per variable when reading
PART = "part-{:012d}.nc"  # named by first sample: lexical order is sample order


def open_dataset(
    path: str | os.PathLike | Iterable[str | os.PathLike], *, chunks: Any = "disk", **kwargs: Any
) -> xr.Dataset:
    """Open a streamed file, or a directory of shards, lazily as Dask arrays.

    Parameters
    ----------
    path : path, directory or list of paths
        A file written by :func:`seqacts.extract_to_netcdf`, or the directory (or part files)
        written by :func:`extract_distributed`, concatenated along ``sample``.
    chunks : dict, "disk", "auto" or None, default "disk"
        Dask chunks. "disk": whole on-disk chunks (``ds.h.encoding["chunksizes"]``) holding
        about 8 MiB of the largest variable each, which keeps reductions such as
        :func:`seqacts.summary` within a few hundred MB of memory. Otherwise as in
        :func:`xarray.open_dataset`: "auto" makes ~128 MiB chunks aligned with the on-disk
        ones (faster for a few large reductions, several GB of peak memory); a dict sets them
        per dimension (pick multiples of the on-disk chunks); ``None`` gives lazily indexed
        numpy-backed variables.
    **kwargs
        Passed on to :func:`xarray.open_dataset`.

    Returns
    -------
    xarray.Dataset
        The :func:`seqacts.extract` schema (``h``: sample, layer, direction, time, unit) holding
        only committed samples. An unfinished file or a missing shard gives an
        :class:`~seqacts.stream.IncompleteStreamWarning`.
    """
    if isinstance(path, (str, os.PathLike)) and not Path(path).exists():
        raise DatasetNotFoundError(f"{path}: no such file or directory; pass a file written by "
                                   "seqacts.extract_to_netcdf or a directory of shards")
    if isinstance(path, (str, os.PathLike)) and not Path(path).is_dir():
        return _load_small(_trim(_open(path, chunks, kwargs)))
    if isinstance(path, (str, os.PathLike)):
        directory = Path(path)
        paths = sorted(directory.glob(PART.replace("{:012d}", "*")))
        manifest = directory / MANIFEST
        expected = json.loads(manifest.read_text())["n_samples"] if manifest.exists() else None
    else:
        paths, expected = [Path(p) for p in path], None
    if not paths:
        raise DatasetNotFoundError(
            f"{path}: no {PART.format(0)}-style part files found; pass a directory written by "
            "seqacts.extract_distributed, or a .nc file")
    parts = [_trim(_open(p, chunks, kwargs), warn=False) for p in paths]
    _same_run(parts, paths)
    parts.sort(key=lambda p: json.loads(p.attrs.get(OPTIONS, "{}")).get("first_sample", 0))
    ds = xr.concat(parts, dim="sample", data_vars="minimal", coords="minimal",
                   compat="override", join="outer", combine_attrs="override")
    samples = ds["sample"].values
    complete = all(p.attrs.get(COMPLETE) for p in parts) and bool(
        np.array_equal(samples, np.arange(expected if expected is not None else len(samples))))
    if not complete:
        warnings.warn(f"{path}: unfinished or missing shards; {len(samples)} samples present of "
                      f"{expected if expected is not None else 'unknown'}. Rerun "
                      "extract_distributed(..., resume=True) to finish", IncompleteStreamWarning,
                      stacklevel=2)
    ds.attrs.update({COMPLETE: int(complete), SAMPLES: len(samples),
                     BATCHES: sum(int(p.attrs.get(BATCHES, 0)) for p in parts)})
    ds.attrs.pop(SIZES, None)
    ds = _load_small(ds)
    ds.set_close(functools.partial(_close_all, parts))
    return ds


def _run_options(attrs: dict[str, Any]) -> dict[str, Any]:
    """A part's fingerprint without what differs between the shards of one run."""
    options = json.loads(attrs.get(OPTIONS, "{}"))
    options.pop("first_sample", None)
    return options


def _same_run(parts: list[xr.Dataset], paths: list[Path]) -> None:
    """Refuse parts written with another model or options than the first part."""
    first = _run_options(parts[0].attrs)
    odd = {}
    for part, p in zip(parts[1:], paths[1:], strict=True):
        options = _run_options(part.attrs)
        if options != first:
            odd[p.name] = sorted(k for k in {*options, *first} if options.get(k) != first.get(k))
    if odd:
        _close_all(parts)
        listed = "; ".join(f"{name} ({', '.join(keys)})" for name, keys in odd.items())
        raise StreamMismatchError(
            f"{paths[0].parent}: parts written with another model or options than "
            f"{paths[0].name}: {listed}. Remove them and rerun extract_distributed(..., "
            "resume=True), or start over with overwrite=True")


def _close_all(parts: list[xr.Dataset]) -> None:
    for part in parts:
        part.close()


def _load_small(ds: xr.Dataset) -> xr.Dataset:
    """Load the per-layer coordinates (names, kinds, widths): tiny, and wanted as labels."""
    small = {name: ds[name].load() for name in ds.coords if "sample" not in ds[name].dims}
    return ds.assign_coords(small)


def _open(path: str | os.PathLike, chunks: Any, kwargs: dict[str, Any]) -> xr.Dataset:
    """``xr.open_dataset`` with a small per-variable HDF5 chunk cache.

    netCDF's default (64 MiB per variable) is kept for the life of the handle; a reduction reads
    each chunk once, so a cache of a few chunks bounds memory without slowing it.
    """
    saved = netCDF4.get_chunk_cache()
    with LOCK:
        netCDF4.set_chunk_cache(READ_CACHE, saved[1], saved[2])
    try:
        store = CheckedStore.open(str(path), mode="r")
    except OSError as err:
        raise explain_unreadable(Path(path), err) from err
    finally:
        with LOCK:
            netCDF4.set_chunk_cache(*saved)
    if isinstance(chunks, str) and chunks == "disk":
        chunks = disk_chunks(store.ds)  # the store's own handle (``ds`` takes its lock)
    with warnings.catch_warnings():  # sample/length sit in bigger chunks than the data
        warnings.filterwarnings("ignore", "The specified chunks separate", UserWarning)
        return xr.open_dataset(store, chunks=chunks, **kwargs)


def _trim(ds: xr.Dataset, warn: bool = True) -> xr.Dataset:
    """Keep the committed part of an opened stream file; warn when it is unfinished."""
    if SIZES not in ds.attrs:
        return ds
    sizes = json.loads(ds.attrs[SIZES])
    ds = ds.isel({d: slice(0, n) for d, n in sizes.items() if d in ds.dims and ds.sizes[d] > n})
    if warn and not ds.attrs.get(COMPLETE):
        warnings.warn(
            f"{ds.encoding.get('source', 'this file')} is an unfinished stream: it holds the "
            f"{sizes['sample']} samples of its {ds.attrs.get(BATCHES)} committed batches. Finish "
            "it with extract_to_netcdf(..., resume=True) and the same batches",
            IncompleteStreamWarning,
            stacklevel=3,
        )
    return ds


def rewrite_trimmed(path: Path) -> None:
    """Copy the committed part of ``path`` into a fresh, complete file (bounded memory).

    Needed only when a resumed run wrote less than the interrupted one had begun to write:
    netCDF cannot shrink an unlimited dimension.
    """
    tmp = path.with_name(f".{path.name}.trim-{os.getpid()}")
    entries = read_log(path)[2]
    with xr.open_dataset(path, engine="netcdf4", cache=False) as src:
        ds = _trim(src, warn=False)
        packed = {
            str(n): PACK_RANGES[str(n)]
            for n, v in src.variables.items()
            if v.encoding.get("dtype") == np.int16
        }
        attrs = {k: v for k, v in ds.attrs.items() if not k.startswith("seqacts_stream")}
        rows = int(src["h"].encoding["chunksizes"][0])
        create(tmp, ds.isel(sample=slice(0, 0)).assign_attrs(attrs),
               json.loads(ds.attrs[OPTIONS]), packed, rows)
        writer = Writer(tmp)
        per_sample = sum(v.nbytes for v in ds.variables.values() if "sample" in v.dims)
        step = max(1, 2**26 * ds.sizes["sample"] // max(per_sample, 1) // rows) * rows
        for start in range(0, ds.sizes["sample"], step):
            writer.append(ds.isel(sample=slice(start, start + step)).load())
        with LOCK:
            if writer.log is not None:
                for k, entry in enumerate(entries):
                    writer.log[k] = encode_entry(entry)
            writer.nc.setncatts({BATCHES: int(ds.attrs[BATCHES]), COMPLETE: 1})
        writer.close()
    os.replace(tmp, path)


class _Shipped:
    """Sends a model with plain pickle: distributed's own torch serializer walks each module's
    ``__dict__`` and fails on the weak references ``nn.LSTM`` keeps to its flat weights."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return _unship, (pickle.dumps(self.model),)


def _unship(payload: bytes) -> _Shipped:
    return _Shipped(pickle.loads(payload))


def _current_run(manifest: Path, run: str) -> None:
    """Raise unless ``run`` is still the directory's current run (not refused, not replaced)."""
    current = json.loads(manifest.read_text()).get("run")
    if current != run:
        raise StreamMismatchError(
            f"{manifest.parent}: this shard belongs to run {run}, but the directory's current "
            f"run is {current} (refused or replaced); not writing")


def _run_shard(shipped: _Shipped, load: Callable[[int, int], Iterable[Any]], start: int,
               stop: int, path: str, opts: Options, run: str) -> dict[str, Any]:
    """One task: stream samples [start, stop) into ``path`` (resuming it if present), each
    batch only while ``run`` is the directory's current run."""
    began, model = time.perf_counter(), shipped.model
    guard = functools.partial(_current_run, Path(path).parent / MANIFEST, run)
    guard()
    stream(model, load(start, stop), Path(path), opts, resume=True, progress=False,
           first_sample=start, guard=guard)
    with xr.open_dataset(path, engine="netcdf4") as ds:
        n = int(ds.attrs[SAMPLES])
    if n != stop - start:
        raise InputError(f"load({start}, {stop}) yielded {n} samples, expected {stop - start}; "
                         "load(start, stop) must return batches of exactly those samples")
    return {"path": path, "samples": n, "seconds": time.perf_counter() - began}


def extract_distributed(
    model: nn.Module,
    load: Callable[[int, int], Iterable[Any]],
    n_samples: int,
    directory: str | os.PathLike,
    *,
    client: Any = None,
    shard_size: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    **options: Any,
) -> list[Path]:
    """Extract ``n_samples`` samples on a ``dask.distributed`` cluster, one netCDF file per shard.

    Parameters
    ----------
    model : torch.nn.Module
        Sent once to every worker (``client.scatter(..., broadcast=True)``); must pickle.
    load : callable
        ``load(start, stop)`` runs on a worker and returns an iterable of batches holding
        exactly samples ``start..stop-1`` in order (e.g. read a memory-mapped array and
        ``torch.split`` it). It must pickle too (cloudpickle: closures and lambdas are fine).
    n_samples : int
        Samples in the whole data set.
    directory : path
        Receives ``part-<first sample>.nc`` files and ``shards.json``; open it with
        :func:`open_dataset`.
    client : distributed.Client, optional
        Default: the current client (``distributed.get_client()``).
    shard_size : int, optional
        Samples per task; default about four tasks per worker. Fixed by the first run (kept
        in ``shards.json``), so resuming keeps the same shards.
    overwrite, resume, progress
        As for :func:`seqacts.extract_to_netcdf`, for the whole directory; ``progress`` counts
        finished shards' samples.
    **options
        The recording and storage options of :func:`seqacts.extract_to_netcdf` (``layers``,
        ``internals``, ``modules``, ``inputs``, ``time``, ``compression``, ``pack``,
        ``checksums``: the fields of :class:`seqacts.options.Options`).

    Returns
    -------
    list of pathlib.Path
        The part files in sample order.
    """
    from distributed import as_completed, get_client

    opts = Options.of("extract_distributed", options)
    client = client if client is not None else get_client()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / MANIFEST
    existing = sorted(directory.glob(PART.replace("{:012d}", "*")))
    if (existing or manifest.exists()) and overwrite:
        for p in existing:
            p.unlink()
        manifest.unlink(missing_ok=True)
    elif (existing or manifest.exists()) and not resume:
        raise OutputExistsError(f"{directory} already holds shards; pass overwrite=True to replace "
                                "them, or resume=True to finish an interrupted run")
    rec = Recorder(model, opts)
    expected = fingerprint(model, rec, opts.modules, opts.compression, opts.pack, 0, opts.time,
                           opts.checksums)
    expected.pop("first_sample")
    expected = json.loads(json.dumps(expected))  # as stored: lists, not tuples
    plan = json.loads(manifest.read_text()) if manifest.exists() else {}
    if plan:
        if plan["n_samples"] != n_samples or shard_size not in (None, plan["shard_size"]):
            raise StreamMismatchError(
                f"resume: {directory} was planned for n_samples={plan['n_samples']}, shard_size="
                f"{plan['shard_size']}; got n_samples={n_samples}, shard_size={shard_size}")
        shard_size = int(plan["shard_size"])
    else:
        workers = max(1, len(client.scheduler_info()["workers"]))
        shard_size = shard_size or max(1, math.ceil(n_samples / (4 * workers)))
    _check_parts(directory, plan.get("fingerprint"), expected)
    run = uuid.uuid4().hex
    _write_manifest(manifest, {"n_samples": n_samples, "shard_size": shard_size,
                               "fingerprint": expected, "run": run})
    shards = [(s, min(s + shard_size, n_samples)) for s in range(0, n_samples, shard_size)]
    paths = [directory / PART.format(s) for s, _ in shards]
    remote_model = client.scatter(_Shipped(model), broadcast=True, hash=False)
    futures = [client.submit(_run_shard, remote_model, load, s, e, str(p), opts, run, pure=False,
                             retries=1) for (s, e), p in zip(shards, paths, strict=True)]
    bar = tqdm(total=n_samples, unit=" samples", desc=directory.name, disable=not progress)
    try:
        for future in as_completed(futures):
            bar.update(future.result()["samples"])
    except BaseException:
        # running shards cannot be stopped; retiring the run stops them before their next batch
        _write_manifest(manifest, {**json.loads(manifest.read_text()), "run": None})
        raise
    finally:
        bar.close()
        client.cancel([f for f in futures if not f.done()])
    return paths


def _write_manifest(manifest: Path, plan: dict[str, Any]) -> None:
    tmp = manifest.with_name(f".{MANIFEST}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(plan))
    os.replace(tmp, manifest)


def _check_parts(directory: Path, planned: dict[str, Any] | None,
                 expected: dict[str, Any]) -> None:
    """Refuse, before any shard runs, a directory written with another model or options."""
    found: dict[str, dict[str, Any]] = {}
    if planned is not None:
        found[MANIFEST] = planned
    for part in sorted(directory.glob(PART.replace("{:012d}", "*"))):
        try:
            with LOCK, netCDF4.Dataset(part) as nc:
                found[part.name] = _run_options({OPTIONS: nc.getncattr(OPTIONS)})
        except (OSError, AttributeError, RuntimeError):
            continue  # unreadable or not yet created: its shard decides
    odd = {name: sorted(k for k in {*options, *expected} if options.get(k) != expected.get(k))
           for name, options in found.items() if options != expected}
    if odd:
        listed = "; ".join(f"{name} ({', '.join(keys)})" for name, keys in odd.items())
        raise StreamMismatchError(
            f"resume: {directory} was written with another model or options: {listed}. Pass "
            "the same model and options, or overwrite=True to start over; no shard was run")
