"""Reading streamed files lazily: one file, or a directory of shards, as one Dask-backed dataset.

Only committed samples are kept; an unfinished file or a missing shard gives an
:class:`~seqacts.errors.IncompleteStreamWarning`, and parts written with another model or
options are refused.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr

from ..errors import DatasetNotFoundError, IncompleteStreamWarning, StreamMismatchError
from ..schema import MODEL_CALL
from .checkedread import CheckedStore
from .chunking import disk_chunks
from .integrity import damaged_metadata, explain_unreadable, is_damage
from .ncfile import (
    BATCHES,
    COMPLETE,
    LOCK,
    OPTIONS,
    SAMPLES,
    SIZES,
    committed_part,
)

__all__ = ["MANIFEST", "PART", "open_dataset", "run_options"]

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
        :class:`~seqacts.IncompleteStreamWarning`.
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
    parts = _number_calls(parts)
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


def run_options(attrs: dict[str, Any]) -> dict[str, Any]:
    """A part's fingerprint without what differs between the shards of one run."""
    options = json.loads(attrs.get(OPTIONS, "{}"))
    options.pop("first_sample", None)
    return options


def _same_run(parts: list[xr.Dataset], paths: list[Path]) -> None:
    """Refuse parts written with another model or options than the first part."""
    first = run_options(parts[0].attrs)
    odd = {}
    for part, p in zip(parts[1:], paths[1:], strict=True):
        options = run_options(part.attrs)
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
    try:
        if isinstance(chunks, str) and chunks == "disk":
            chunks = disk_chunks(store.ds)  # the store's own handle (``ds`` takes its lock)
        with warnings.catch_warnings():  # sample/length sit in bigger chunks than the data
            warnings.filterwarnings("ignore", "The specified chunks separate", UserWarning)
            return xr.open_dataset(store, chunks=chunks, **kwargs)
    except BaseException as err:
        store.close()
        if not is_damage(err):
            raise
        raise damaged_metadata(Path(path), err) from err


def _trim(ds: xr.Dataset, warn: bool = True) -> xr.Dataset:
    """Keep the committed part of an opened stream file; warn when it is unfinished."""
    if SIZES not in ds.attrs:
        return ds
    sizes = json.loads(ds.attrs[SIZES])
    ds = committed_part(ds)
    if warn and not ds.attrs.get(COMPLETE):
        warnings.warn(
            f"{ds.encoding.get('source', 'this file')} is an unfinished stream: it holds the "
            f"{sizes['sample']} samples of its {ds.attrs.get(BATCHES)} committed batches. Finish "
            "it with extract_to_netcdf(..., resume=True) and the same batches",
            IncompleteStreamWarning,
            stacklevel=3,
        )
    return ds


def _number_calls(parts: list[xr.Dataset]) -> list[xr.Dataset]:
    """``model_call`` numbered on across shards, in sample order (each shard counts from 0)."""
    out, offset = [], 0
    for part in parts:
        if MODEL_CALL in part.coords:
            calls = np.asarray(part[MODEL_CALL].values)
            part = part.assign_coords({MODEL_CALL: (part[MODEL_CALL].dims, calls + offset)})
            offset += int(calls.max()) + 1 if calls.size else 0
        out.append(part)
    return out
