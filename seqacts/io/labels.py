"""Per-sample labels (``is_anomaly``, ``anomaly`` ...) added to a finished seqacts netCDF file.

The labels become coordinates along ``sample`` when the file is opened (named in the global
``coordinates`` attribute, as CF and xarray read it), so ``ds.seqacts.compare("is_anomaly")``
and ``seqacts report --group is_anomaly`` find them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import netCDF4
import numpy as np
import xarray as xr

from ..errors import InputError

__all__ = ["add_sample_coords"]


def add_sample_coords(path: str | os.PathLike, coords: Mapping[str, np.ndarray]) -> None:
    """Write ``coords`` (name -> one value per sample) into the file at ``path``.

    Raises
    ------
    InputError
        When a label does not have one value per sample of the file.
    """
    with netCDF4.Dataset(path, "a") as nc:
        n = len(nc.dimensions["sample"])
        names = []
        for name, values in coords.items():
            values = np.asarray(values)
            if values.shape != (n,):
                raise InputError(f"{name}: {values.shape} labels for {n} samples; give one "
                                 "label per sample")  # fmt: skip
            if values.dtype.kind in "OUS":
                var = nc.createVariable(name, str, ("sample",))
                var[:] = values.astype(str).astype(object)
            else:
                encoded = xr.conventions.encode_cf_variable(
                    xr.Variable("sample", values), name=name
                )
                var = nc.createVariable(name, encoded.dtype, ("sample",))
                var.setncatts({k: v for k, v in encoded.attrs.items() if v is not None})
                var[:] = encoded.values
            names.append(name)
        existing = str(getattr(nc, "coordinates", "")).split()
        nc.setncattr("coordinates", " ".join(dict.fromkeys(existing + names)))
