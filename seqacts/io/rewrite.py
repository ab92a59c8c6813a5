"""Rewriting a stream file without its uncommitted rows, which netCDF cannot cut off in place."""

from __future__ import annotations

import json
import os
from pathlib import Path

import xarray as xr

from .ncfile import (
    BATCHES,
    BOOKKEEPING,
    COMPLETE,
    LOCK,
    OPTIONS,
    Writer,
    committed_part,
    create,
    encode_entry,
    read_log,
)
from .packing import packed_in

__all__ = ["rewrite_trimmed"]

REWRITE_BYTES = 2**26  # bytes of samples copied per step: memory stays bounded


def rewrite_trimmed(path: Path) -> None:
    """Copy the committed part of ``path`` into a fresh, complete file (bounded memory).

    Needed only when a resumed run wrote less than the interrupted one had begun to write:
    netCDF cannot shrink an unlimited dimension. The copy keeps the file's options, packing,
    chunking and batch log. On any failure (also ``KeyboardInterrupt``) ``path`` is left as it
    was and the temporary copy is removed.
    """
    tmp = path.with_name(f".{path.name}.trim-{os.getpid()}")
    try:
        entries = read_log(path)[2]
        with xr.open_dataset(path, engine="netcdf4", cache=False) as src:
            ds = committed_part(src)
            packed = packed_in((n, v.encoding.get("dtype")) for n, v in src.variables.items())
            attrs = {k: v for k, v in ds.attrs.items() if k not in BOOKKEEPING}
            rows = int(src["h"].encoding["chunksizes"][0])
            create(tmp, ds.isel(sample=slice(0, 0)).assign_attrs(attrs),
                   json.loads(ds.attrs[OPTIONS]), packed, rows)
            writer = Writer(tmp)
            try:
                per_sample = sum(v.nbytes for v in ds.variables.values() if "sample" in v.dims)
                step = max(1, REWRITE_BYTES * ds.sizes["sample"] // max(per_sample, 1) // rows)
                step *= rows
                for start in range(0, ds.sizes["sample"], step):
                    writer.append(ds.isel(sample=slice(start, start + step)).load())
                with LOCK:
                    if writer.log is not None:
                        for k, entry in enumerate(entries):
                            writer.log[k] = encode_entry(entry)
                    writer.nc.setncatts({BATCHES: int(ds.attrs[BATCHES]), COMPLETE: 1})
            finally:
                writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
