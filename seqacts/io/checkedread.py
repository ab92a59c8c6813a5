"""xarray's netCDF4 store, with reads that name what failed.

A chunk failing its fletcher32 checksum surfaces from netCDF-C as ``NetCDF: HDF error``, at
``.compute()`` time, far from the file. Here each lazily read variable turns that into a
:class:`~seqacts.errors.CorruptFileError` naming the file, the variable and the failing
sample range.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends import NetCDF4DataStore
from xarray.backends.netCDF4_ import NetCDF4ArrayWrapper
from xarray.core import indexing

from ..errors import StreamBusyError
from .integrity import corrupt_chunk_error
from .lock import describe, lock_holder

__all__ = ["CheckedStore"]


class _CheckedArray(NetCDF4ArrayWrapper):
    __slots__ = ()

    def _getitem(self, key: Any) -> Any:
        try:
            return super()._getitem(key)
        except RuntimeError as err:
            raise self._explain(key, err) from None

    def _explain(self, key: Any, err: RuntimeError) -> Exception:
        with self.datastore.lock:
            var = self.get_array(needs_lock=False)
            path = var.group().filepath()
            holder = lock_holder(Path(path))
            if holder is not None:
                return StreamBusyError(
                    errno.EBUSY, f"{path} is being written by {describe(holder)} and changed under this "
                    f"read of {self.variable_name!r}; read it when that run has finished")
            if "sample" not in var.dimensions:
                return corrupt_chunk_error(path, self.variable_name, [], err)
            k = key[var.dimensions.index("sample")]
            if isinstance(k, slice):
                start, stop, _ = k.indices(var.shape[var.dimensions.index("sample")])
            else:
                idx = np.atleast_1d(np.asarray(k))
                start, stop = int(idx.min()), int(idx.max()) + 1
            # the failing read's range: probing its chunks again here could crash HDF5 on the
            # damaged data (seqacts.verify probes chunk by chunk, in a single thread)
            ranges = [(start, stop)]
        return corrupt_chunk_error(path, self.variable_name, ranges, err)


class CheckedStore(NetCDF4DataStore):
    """A :class:`xarray.backends.NetCDF4DataStore` whose arrays explain failed reads."""

    def open_store_variable(self, name: str, var: Any) -> xr.Variable:
        plain = super().open_store_variable(name, var)
        data = indexing.LazilyIndexedArray(_CheckedArray(name, self))
        return xr.Variable(plain.dims, data, plain.attrs, plain.encoding)
