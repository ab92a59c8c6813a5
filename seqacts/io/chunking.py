"""The default Dask chunking of an opened seqacts file: small, whole on-disk chunks.

xarray's ``chunks="auto"`` makes ~128 MiB chunks; a reduction such as ``summary()`` then holds
several of them per thread plus their temporaries (2.4 GB peak RSS on a 1.1 GB file). Chunks of
whole on-disk chunks holding about :data:`CHUNK_BYTES` of the largest variable keep the same
analyses within a few hundred MB at about the same speed (``benchmarks/bench_analysis_memory.py``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import xarray as xr

__all__ = ["CHUNK_BYTES", "disk_chunks"]

#: Bytes of the largest variable in one Dask chunk of the default chunking.
CHUNK_BYTES = 8 * 2**20


def _first_file(path: str | os.PathLike | Iterable[str | os.PathLike]) -> Path | None:
    if isinstance(path, (str, os.PathLike)):
        p = Path(path)
        if not p.is_dir():
            return p
        return next(iter(sorted(p.glob("part-*.nc"))), None)
    if isinstance(path, (list, tuple)):  # never consume a one-shot iterator
        return next((Path(p) for p in path), None)
    return None


def disk_chunks(path: str | os.PathLike | Iterable[str | os.PathLike]) -> dict[str, int]:
    """``{"sample": n}``: whole on-disk chunks, about :data:`CHUNK_BYTES` per Dask chunk.

    Other dimensions keep their on-disk chunks (xarray's preferred chunks). Empty when the
    file has no chunked variable along ``sample`` (xarray then follows the disk alone).
    """
    first = _first_file(path)
    if first is None or not first.is_file():
        return {}
    best: tuple[int, int] | None = None  # (bytes per sample of one chunk, disk rows)
    # Read through xarray's file manager: a second raw netCDF4 handle on a file that xarray
    # holds open can crash HDF5 when it is closed.
    with xr.open_dataset(first, engine="netcdf4", chunks=None) as ds:
        for var in ds.variables.values():
            chunking = var.encoding.get("chunksizes")
            if var.dims[:1] != ("sample",) or not chunking or var.dtype.kind not in "fiub":
                continue
            per_sample = math.prod(chunking[1:]) * var.dtype.itemsize  # as decoded in memory
            if best is None or per_sample > best[0]:
                best = (per_sample, int(chunking[0]))
    if best is None:
        return {}
    per_sample, rows = best
    return {"sample": max(rows, CHUNK_BYTES // (per_sample * rows) * rows)}
