"""Sharded extraction on a ``dask.distributed`` cluster.

:func:`extract_distributed` splits ``range(n_samples)`` into shards. Each worker holds one copy
of the model (scattered once), loads its shard's inputs itself with ``load(start, stop)``, and
streams them with :func:`seqacts.extract_to_netcdf` into its own ``part-<first sample>.nc``
(one writer per file: HDF5 has no parallel append). :func:`seqacts.open_dataset` opens the
directory as one dataset. A shard whose worker dies is retried and resumes its own part; a
second run with ``resume=True`` skips finished parts.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pickle
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import netCDF4
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from ..capture.recorder import Recorder
from ..errors import InputError, OutputExistsError
from ..options import Options
from ..signatures import keywords_from
from .ncfile import (
    LOCK,
    OPTIONS,
    SAMPLES,
)
from .reading import MANIFEST, PART, run_options
from .stream import (
    StreamMismatchError,
    fingerprint,
    stream,
)

__all__ = ["extract_distributed"]


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


@keywords_from(Options)
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
    layers, internals, time, modules, cells, chain, edits, compression, pack, checksums, inputs
        As for :func:`seqacts.extract_to_netcdf` (the fields of
        :class:`seqacts.options.Options`): every shard records with the same options, and
        with ``edits`` the edited run.

    Returns
    -------
    list of pathlib.Path
        The part files in sample order.
    """
    from distributed import as_completed, get_client

    opts = Options.of("extract_distributed", options)
    client = client if client is not None else get_client()
    directory = Path(directory)
    manifest = _prepare(directory, overwrite=overwrite, resume=resume)
    rec = Recorder(model, opts)
    expected = fingerprint(model, rec, opts, 0)
    expected.pop("first_sample")
    expected = json.loads(json.dumps(expected))  # as stored: lists, not tuples
    plan = json.loads(manifest.read_text()) if manifest.exists() else {}
    shard_size = _shard_size(plan, n_samples, shard_size, client, directory)
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


def _prepare(directory: Path, *, overwrite: bool, resume: bool) -> Path:
    """Create ``directory``, emptied of an earlier run's shards when overwriting (refused
    unless resuming otherwise); return the path of its manifest."""
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
    return manifest


def _shard_size(plan: dict[str, Any], n_samples: int, shard_size: int | None, client: Any,
                directory: Path) -> int:
    """The planned run's shard size (which a resumed run must match), else the one asked for,
    else about four shards per worker."""
    if plan:
        if plan["n_samples"] != n_samples or shard_size not in (None, plan["shard_size"]):
            raise StreamMismatchError(
                f"resume: {directory} was planned for n_samples={plan['n_samples']}, shard_size="
                f"{plan['shard_size']}; got n_samples={n_samples}, shard_size={shard_size}")
        return int(plan["shard_size"])
    workers = max(1, len(client.scheduler_info()["workers"]))
    return shard_size or max(1, math.ceil(n_samples / (4 * workers)))


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
                found[part.name] = run_options({OPTIONS: nc.getncattr(OPTIONS)})
        except (OSError, AttributeError, RuntimeError):
            continue  # unreadable or not yet created: its shard decides
    odd = {name: sorted(k for k in {*options, *expected} if options.get(k) != expected.get(k))
           for name, options in found.items() if options != expected}
    if odd:
        listed = "; ".join(f"{name} ({', '.join(keys)})" for name, keys in odd.items())
        raise StreamMismatchError(
            f"resume: {directory} was written with another model or options: {listed}. Pass "
            "the same model and options, or overwrite=True to start over; no shard was run")
