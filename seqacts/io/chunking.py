"""The default Dask chunking of an opened seqacts file: small, whole on-disk chunks.

xarray's ``chunks="auto"`` makes ~128 MiB chunks; a reduction such as ``summary()`` then holds
several of them per thread plus their temporaries (2.4 GB peak RSS on a 1.1 GB file). Chunks of
whole on-disk chunks holding about :data:`CHUNK_BYTES` of the largest variable keep the same
analyses within a few hundred MB at about the same speed (``benchmarks/bench_analysis_memory.py``).
"""

from __future__ import annotations

import math

import netCDF4

__all__ = ["CHUNK_BYTES", "disk_chunks"]

#: Bytes of the largest variable in one Dask chunk of the default chunking.
CHUNK_BYTES = 8 * 2**20


def disk_chunks(nc: netCDF4.Dataset) -> dict[str, int]:
    """``{"sample": n}``: whole on-disk chunks, about :data:`CHUNK_BYTES` per Dask chunk.

    Read from the handle the file is opened with (a second handle on a file that HDF5 holds
    open can crash it when closed). Other dimensions keep their on-disk chunks. Empty when the
    file has no chunked variable along ``sample`` (xarray then follows the disk alone).
    """
    best: tuple[int, int] | None = None  # (bytes per sample of one chunk, disk rows)
    for var in nc.variables.values():
        kind = getattr(var.dtype, "kind", "O")  # variable-length strings have dtype str
        if var.dimensions[:1] != ("sample",) or kind not in "fiub":
            continue
        chunking = var.chunking()
        if chunking == "contiguous":
            continue
        itemsize = 4 if "scale_factor" in var.ncattrs() else var.dtype.itemsize  # as decoded
        per_sample = math.prod(chunking[1:]) * itemsize
        if best is None or per_sample > best[0]:
            best = (per_sample, int(chunking[0]))
    if best is None:
        return {}
    per_sample, rows = best
    return {"sample": max(rows, CHUNK_BYTES // (per_sample * rows) * rows)}
