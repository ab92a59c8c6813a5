"""Streaming datasets that are already in memory (e.g. from :func:`seqacts.extract`) to one file.

The storage half of :func:`seqacts.extract_to_netcdf`, without a model: same file layout,
options, two-step commit, lock and checks. Its throughput is the write path the README reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import xarray as xr

from ..errors import InputError, OutputExistsError
from ..options import StorageOptions
from ..signatures import keywords_from
from .destination import Output, check_destination
from .lock import StreamLock

__all__ = ["numbered", "write_stream"]


def numbered(ds: xr.Dataset, calls: int) -> tuple[xr.Dataset, int]:
    """``ds`` with its ``model_call`` numbered on after ``calls`` calls when it starts at 0
    (each recording counts from 0), and the calls written after it."""
    if "model_call" not in ds.coords or not ds.sizes["sample"]:
        return ds, calls
    first, last = int(ds["model_call"].min()), int(ds["model_call"].max())
    if first == 0 and calls:
        return ds.assign_coords(model_call=ds["model_call"] + calls), calls + last + 1
    return ds, max(calls, last + 1)


@keywords_from(StorageOptions)
def write_stream(datasets: Iterable[xr.Dataset], path: str | os.PathLike, *,
                 overwrite: bool = False, **options: Any) -> Path:
    """Append datasets of the :func:`seqacts.extract` schema along ``sample`` into one file.

    Parameters
    ----------
    datasets : iterable of xarray.Dataset
        Batches recorded from the same layers (same variables); ``time`` may grow.
    path : path
        The netCDF4 file to write; it must not exist unless ``overwrite``.
    overwrite : bool, default False
        Replace an existing file (written under a temporary name, renamed at the end).
    compression, pack, checksums
        As for :func:`seqacts.extract_to_netcdf` (the fields of
        :class:`seqacts.options.StorageOptions`; without the model, ``pack`` leaves ``h`` of
        ``RNNCell`` loops float: their nonlinearity is not recorded).

    Returns
    -------
    pathlib.Path
        ``path``, readable with :func:`seqacts.open_dataset`. A dataset whose ``model_call``
        starts at 0 (a recording of its own) is numbered on after the datasets before it, as
        :func:`seqacts.extract_to_netcdf` numbers its batches.
    """
    storage = StorageOptions.of("write_stream", options)
    path = Path(path)
    check_destination(path)
    options = {"compression": storage.compression, "pack": storage.pack,
               "checksums": storage.checksums, "first_sample": 0, "model_weights": None}
    with StreamLock(path):
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path} exists; pass overwrite=True to replace it")
        with Output(path, overwrite=overwrite) as out:
            calls = 0  # model(...) calls written so far
            for ds in datasets:
                ds, calls = numbered(ds, calls)
                writer = out.writer or out.create(ds, options, None)
                writer.append(ds, {"samples": ds.sizes["sample"]})
            if out.writer is None:
                raise InputError("datasets: the iterable yielded no dataset; nothing to write")
            out.finish()
    return path
