"""Streaming datasets that are already in memory (e.g. from :func:`seqacts.extract`) to one file.

The storage half of :func:`seqacts.extract_to_netcdf`, without a model: same file layout,
options, two-step commit, lock and checks. Its throughput is the write path the README reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import xarray as xr

from ..errors import InputError, OutputExistsError
from ..options import Options
from .destination import check_destination, create_exclusive
from .lock import StreamLock
from .ncfile import Writer

__all__ = ["write_stream"]


def write_stream(datasets: Iterable[xr.Dataset], path: str | os.PathLike, *,
                 compression: str | None = None, pack: str | None = None,
                 checksums: bool = True, overwrite: bool = False) -> Path:
    """Append datasets of the :func:`seqacts.extract` schema along ``sample`` into one file.

    Parameters
    ----------
    datasets : iterable of xarray.Dataset
        Batches recorded from the same layers (same variables); ``time`` may grow.
    path : path
        The netCDF4 file to write; it must not exist unless ``overwrite``.
    compression, pack, checksums
        As for :func:`seqacts.extract_to_netcdf` (without the model, ``pack`` leaves ``h`` of
        ``RNNCell`` loops float: their nonlinearity is not recorded).
    overwrite : bool, default False
        Replace an existing file (written under a temporary name, renamed at the end).

    Returns
    -------
    pathlib.Path
        ``path``, readable with :func:`seqacts.open_dataset`.
    """
    storage = Options(compression=compression, pack=pack, checksums=checksums)
    path = Path(path)
    check_destination(path)
    options = {"compression": storage.compression, "pack": storage.pack,
               "checksums": storage.checksums, "first_sample": 0, "model_weights": None}
    target = path.with_name(f".{path.name}.tmp-{os.getpid()}") if overwrite else path
    with StreamLock(path):
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path} exists; pass overwrite=True to replace it")
        writer = None
        try:
            for ds in datasets:
                if writer is None:
                    create_exclusive(target, ds, options, None, overwrite=overwrite)
                    writer = Writer(target)
                writer.append(ds, {"samples": ds.sizes["sample"]})
            if writer is None:
                raise InputError("datasets: the iterable yielded no dataset; nothing to write")
            writer.finish()  # a new file: never rows past the committed ones
            if overwrite:
                os.replace(target, path)
        except BaseException:
            if writer is not None:
                writer.close()
            if overwrite:
                target.unlink(missing_ok=True)
            raise
    return path
