"""The netCDF file layer of streaming: file layout, variable definitions, the appending Writer.

Constants for storage options (compression filters, chunking, caches; int16 packing is
:mod:`seqacts.io.packing`), the bookkeeping attribute names, :func:`create` (an empty file
shaped like a dataset) and :class:`Writer` (appends batches along ``sample``, grows ``time``,
commits with ``sync()``). :mod:`seqacts.io.stream` drives it; nothing here runs a model.
"""

from __future__ import annotations

import ctypes
import functools
import json
import threading
import warnings
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import xarray as xr

from ..errors import ArgumentTypeError, StreamMismatchError, StreamWriteError
from . import packing
from .diskspace import diagnose, preflight, release_descriptors

#: Lossless filters for ``compression=``: netCDF4 ``createVariable`` arguments. zstd gets the
#: shuffle filter too (set through the C library: netCDF4-python only shuffles for zlib).
COMPRESSIONS: dict[str, dict[str, Any]] = {
    "zlib": {"compression": "zlib", "complevel": 1, "shuffle": True},
    "zstd": {"compression": "zstd", "complevel": 1},
}

FIXED_DIMS = ("layer", "direction", "unit")  # set by the model; every other dim may grow
CHUNK_BYTES = 2**21  # ~2 MiB chunks: one sample or one layer reads a few chunks, not the file
WRITE_CACHE = 2**23  # HDF5 chunk cache per variable while writing (netCDF's default: 64 MiB)

# Bookkeeping attributes (global): committed sizes of the growing dims, batches, options.
COMPLETE = "seqacts_stream_complete"
SAMPLES = "seqacts_stream_samples"
BATCHES = "seqacts_stream_batches"
SIZES = "seqacts_stream_sizes"
OPTIONS = "seqacts_stream_options"
BOOKKEEPING = (COMPLETE, SAMPLES, BATCHES, SIZES, OPTIONS)
# Per-batch log (samples, inputs digest, input shapes), in a group xarray does not read.
# Fixed-size rows (JSON padded with spaces): rewritten in place after a kill, unlike VLEN strings.
LOG_GROUP = "seqacts_stream"
LOG = "batches"
LOG_WIDTH = 512


def encode_entry(entry: dict[str, Any]) -> np.ndarray:
    """A batch-log entry as one fixed-width row of bytes (input shapes dropped if too long)."""
    text = json.dumps(entry)
    if len(text) > LOG_WIDTH:
        text = json.dumps({k: v for k, v in entry.items() if k != "shapes"})
    return np.frombuffer(text.ljust(LOG_WIDTH).encode(), np.uint8)


def decode_entries(rows: np.ndarray) -> list[dict[str, Any]]:
    return [json.loads(bytes(row).decode()) for row in np.asarray(rows, np.uint8)]

try:  # share xarray's lock: netCDF-C/HDF5 are not thread-safe, and dask reads use this lock
    from xarray.backends.netCDF4_ import NETCDF4_PYTHON_LOCK as LOCK
except ImportError:  # pragma: no cover - older/newer xarray layout
    LOCK = threading.Lock()

@functools.lru_cache(maxsize=1)
def _netcdf_c() -> Any:
    """The netCDF-C library netCDF4-python loaded (Linux), or None."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if "libnetcdf" in line and ".so" in line:
                    return ctypes.CDLL(line.split()[-1])
    except OSError:
        pass
    return None


def _add_shuffle(nc: netCDF4.Dataset, var: netCDF4.Variable) -> None:
    lib = _netcdf_c()
    if lib is None or lib.nc_def_var_deflate(nc._grpid, var._varid, 1, 0, 0) != 0:
        warnings.warn("zstd: could not add the shuffle filter; compressing without it", stacklevel=4)


def rows_per_chunk(ds: xr.Dataset) -> int:
    """Samples per chunk: ~CHUNK_BYTES per layer, a power of two dividing the batch size.

    Batches then fill whole chunks, so a committed compressed chunk is never rewritten (HDF5
    would move it and could reuse its old space before the next sync: a kill would lose it).
    """
    n = ds.sizes["sample"]
    per_row = max(v.nbytes // max(n * v.sizes.get("layer", 1), 1) for v in ds.data_vars.values())
    rows = int(np.clip(CHUNK_BYTES // max(per_row, 1), 1, 64))
    rows = 1 << (rows.bit_length() - 1)
    while n % rows:
        rows //= 2
    return rows


def create(path: Path, ds: xr.Dataset, options: dict[str, Any],
           packed: dict[str, tuple[float, float]], rows: int) -> None:
    """Write ``ds``'s schema with no samples to ``path``, following xarray's conventions."""
    ds = ds.isel(sample=slice(0, 0)).load()  # read lazy coordinates before taking the lock
    coords = [str(c) for c in ds.coords if c not in ds.dims]
    with LOCK:
        nc = netCDF4.Dataset(path, "w", format="NETCDF4")
        try:
            nc.set_auto_maskandscale(False)
            for dim, size in ds.sizes.items():
                nc.createDimension(str(dim), size if dim in FIXED_DIMS else None)
            for name, var in ds.variables.items():
                _define(nc, str(name), var, options, packed.get(str(name)),
                        rows if name in ds.data_vars else 4096)
            listed: set[str] = set()
            for name in ds.data_vars:
                attached = [c for c in coords if set(ds[c].dims) <= set(ds[name].dims)]
                if attached:
                    nc[str(name)].setncattr("coordinates", " ".join(attached))
                    listed.update(attached)
            attrs = dict(ds.attrs)
            if rest := [c for c in coords if c not in listed]:
                attrs["coordinates"] = " ".join(rest)
            sizes = {str(d): 0 if d == "sample" else n for d, n in ds.sizes.items()
                     if d not in FIXED_DIMS}  # coordinates along the growing dims are written
            attrs.update({COMPLETE: 0, SAMPLES: 0, BATCHES: 0, SIZES: _padded_json(sizes)})
            nc.setncatts({**attrs, OPTIONS: json.dumps(options)})
            log = nc.createGroup(LOG_GROUP)
            log.createDimension("batch", None)
            log.createDimension("byte", LOG_WIDTH)
            log.createVariable(LOG, np.uint8, ("batch", "byte"), chunksizes=(64, LOG_WIDTH))
            nc.sync()
        finally:
            nc.close()


def _padded_json(obj: Any) -> str:
    # Fixed-size attribute values are rewritten in place; a resized one may move in the file.
    text = json.dumps(obj)
    return text.ljust(-(-len(text) // 256) * 256)


def _define(nc: netCDF4.Dataset, name: str, var: xr.Variable, options: dict[str, Any],
            pack: tuple[float, float] | None, rows: int) -> None:
    compression = options["compression"]
    dims = tuple(map(str, var.dims))
    if var.dtype.kind in "mM":  # time labels: CF-encoded, as xarray would
        var = xr.conventions.encode_cf_variable(var, name=name)
    if var.dtype.kind in "OUS":
        nc.createVariable(name, str, dims)[:] = np.asarray(var.values, dtype=object)
        nc[name].setncatts(var.attrs)
        return
    if var.dtype.kind not in "fiu":
        raise ArgumentTypeError(f"{name}: cannot stream a {var.dtype} variable; expected float or int")
    dtype = np.dtype(np.float32) if var.dtype == np.float16 else var.dtype
    # fletcher32: HDF5 checks each chunk on read, so a flipped byte raises instead of reading
    kwargs: dict[str, Any] = {"fletcher32": bool(options.get("checksums", True))}
    if var.dtype.kind == "f":
        kwargs["fill_value"] = packing.PACK_FILL if pack else dtype.type(np.nan)
    if any(d not in FIXED_DIMS for d in dims):
        sizes = {d: max(s, 1) for d, s in zip(dims, var.shape, strict=True)}
        step = var.dtype.itemsize * int(np.prod([s for d, s in sizes.items() if d not in (
            "sample", "layer", "time")]))
        if "time" in sizes and step * sizes["time"] > 2 * CHUNK_BYTES:
            sizes["time"] = max(1, CHUNK_BYTES // step)
        sizes.update(sample=rows, layer=1)
        kwargs["chunksizes"] = tuple(sizes[d] for d in dims)
    if compression and rows != 4096 and "sample" in dims:
        kwargs.update(COMPRESSIONS[compression])
    v = nc.createVariable(name, np.dtype("i2") if pack else dtype, dims, **kwargs)
    if compression == "zstd" and "compression" in kwargs:
        _add_shuffle(nc, v)
    attrs = dict(var.attrs)
    if pack is not None:
        attrs.update(packing.pack_attrs(*pack, dtype))
    v.setncatts(attrs)
    if "sample" not in dims:
        v[:] = var.values.astype(dtype, copy=False)


def committed_part(ds: xr.Dataset) -> xr.Dataset:
    """An opened stream file's committed samples (and committed steps of its growing dims)."""
    if SIZES not in ds.attrs:
        return ds
    sizes = json.loads(ds.attrs[SIZES])
    return ds.isel({d: slice(0, n) for d, n in sizes.items() if d in ds.dims and ds.sizes[d] > n})


def read_log(path: Path) -> tuple[int, int, list[dict[str, Any]]]:
    """``(committed samples, committed batches, batch log)`` of a stream file, read-only."""
    with LOCK, netCDF4.Dataset(path) as nc:
        samples, batches = int(nc.getncattr(SAMPLES)), int(nc.getncattr(BATCHES))
        if LOG_GROUP not in nc.groups:
            return samples, batches, []
        log = nc.groups[LOG_GROUP][LOG]
        log.set_auto_maskandscale(False)
        return samples, batches, decode_entries(log[: min(batches, len(log))])


class Writer:
    """An open stream file: appends batches along ``sample``, grows dims, commits.

    Each batch is committed in two synced steps: its data (and its batch-log entry) first, then
    the attributes counting it. A failure or kill before the second sync leaves the batch
    uncounted: readers and ``resume`` see only the batches before it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with LOCK:
            self.nc = netCDF4.Dataset(path, "a")
            self.nc.set_auto_maskandscale(False)
        try:
            attrs = {k: self.nc.getncattr(k) for k in self.nc.ncattrs()}
            self.options: dict[str, Any] = json.loads(attrs[OPTIONS])
            self.committed: dict[str, int] = json.loads(attrs[SIZES])
            self.batches = int(attrs[BATCHES])
            self.complete = bool(attrs[COMPLETE])
        except BaseException:
            self.close()
            raise
        self.log = self.nc.groups[LOG_GROUP][LOG] if LOG_GROUP in self.nc.groups else None
        if self.log is not None:
            self.log.set_auto_maskandscale(False)
        self.growing = [d for d in self.nc.dimensions if d not in FIXED_DIMS and d != "sample"]
        self.rows = sorted((n for n, v in self.nc.variables.items() if "sample" in v.dimensions),
                           key=lambda n: n == "sample")  # the sample coordinate last
        self.packed = packing.packed_in((n, v.dtype) for n, v in self.nc.variables.items())
        for name in self.rows:  # whole chunks are written: a big cache only holds memory
            self.nc[name].set_var_chunk_cache(size=WRITE_CACHE)
        self.compressed = any(v.filters().get("complevel") for v in self.nc.variables.values())
        self.chunk = min([int(v.chunking()[0]) for v in self.nc.variables.values()
                          if v.filters().get("complevel")] or [1])

    def _len(self, dim: str) -> int:
        return len(self.nc.dimensions[dim])

    def append(self, ds: xr.Dataset | None, entry: dict[str, Any] | None = None) -> int:
        """Write one batch after the committed samples and commit it; return bytes written.

        ``ds=None`` commits a batch of 0 samples. ``entry`` (the batch's samples and inputs
        digest) goes to the batch log. Raises :class:`StreamWriteError` (with ``errno``) when
        the data cannot be written; the file then still holds every committed batch, and this
        writer is closed.
        """
        start, n = self.committed["sample"], 0 if ds is None else ds.sizes["sample"]
        if ds is not None:
            self._check_variables(ds)
        if start % self.chunk and n:
            warnings.warn(
                f"compression: this batch starts at sample {start}, inside a compressed chunk of "
                f"{self.chunk} samples that a committed batch wrote; a crash now could lose that "
                f"chunk. Use batch sizes that are multiples of {self.chunk}", stacklevel=4)
        variables = {} if ds is None else dict(ds.variables)
        data = self._encode(variables, start, n)  # outside the lock (lazy input reads take it)
        nbytes = sum(v.nbytes for v in data.values())
        if not self.compressed and (short := preflight(self.path, nbytes)):
            self._fail(short[0], short[1], None, written=False)
        sizes = {} if ds is None else dict(ds.sizes)
        grown = {d: ds[d].values for d in self.growing
                 if ds is not None and d in ds.variables and sizes.get(d, 0) > self.committed[d]}
        committed = {"sample": start + n, **{d: max(self.committed[d], int(sizes.get(d, 0)))
                                             for d in self.growing}}
        try:
            with LOCK:  # step 1: the data, synced
                for d, values in grown.items():
                    self.nc[d][: len(values)] = values
                for name, values in data.items():
                    dims = variables[name].dims
                    self.nc[name][tuple(slice(start, start + n) if d == "sample" else slice(0, s)
                                        for d, s in zip(dims, values.shape, strict=True))] = values
                if ds is not None and n:
                    self._pad(start + n, ds)
                if self.log is not None and entry is not None:
                    self.log[self.batches] = encode_entry(entry)
                self.nc.sync()
            with LOCK:  # step 2: the commit record, synced
                self.nc.setncatts({SAMPLES: start + n, BATCHES: self.batches + 1,
                                   SIZES: _padded_json(committed)})
                self.nc.sync()
        except (RuntimeError, OSError) as err:
            errno_, reason = diagnose(self.path, nbytes, err)
            self._fail(errno_, reason, err, written=True)
        self.committed = committed
        self.batches += 1
        return nbytes

    def _check_variables(self, ds: xr.Dataset) -> None:
        """Raise unless ``ds`` has the file's variables (the first batch's)."""
        if set(map(str, ds.variables)) == set(self.nc.variables):
            return
        differ = set(map(str, ds.variables)) ^ set(self.nc.variables)
        why = ("every batch must record the same modules" if not differ <= {"call", "call_row"}
               else "in this batch the calls became samples differently from the first one "
               "(coordinates call/call_row; see the README's 'How calls become samples'): "
               "stream batches whose forward calls the recurrent layers the same way")
        raise StreamMismatchError(
            f"this batch's dataset has variables {sorted(map(str, ds.variables))} but the file "
            f"has {sorted(self.nc.variables)}; {why}")

    def _encode(self, variables: dict[Any, xr.Variable], start: int,
                n: int) -> dict[str, np.ndarray]:
        """The per-sample arrays of a batch of ``n`` samples as stored: ``sample`` numbered on
        from ``start``, packed variables as int16, float16 as float32."""
        data: dict[str, np.ndarray] = {}
        for name in self.rows if n else ():
            data[name] = np.asarray(variables[name].values)
            if name == "sample":
                data[name] = np.arange(start, start + n) + self.options["first_sample"]
            elif name in self.packed:
                data[name] = packing.pack(data[name], name, *self.packed[name])
            elif data[name].dtype == np.float16:
                data[name] = data[name].astype(np.float32)
        return data

    def _fail(self, errno_: int | None, reason: str, err: BaseException | None,
              written: bool) -> None:
        committed, batches = self.committed["sample"], self.batches
        self.close()
        where = "writing" if written else "before writing"
        raise StreamWriteError(
            errno_, f"{where} batch {batches} ({reason}); the file keeps the {committed} "
            f"samples of its {batches} committed batches. Free space (or raise the limit) and "
            "rerun with resume=True to finish it", str(self.path)) from err

    def _pad(self, row: int, ds: xr.Dataset) -> None:
        """Give every variable the full extent of every grown dim, via a fill in the new row.

        netCDF-C returns garbage, not the fill value, when reading beyond a variable's own extent
        along an unlimited dim that another variable has grown.
        """
        for name in self.rows:
            v, var = self.nc.variables[name], ds.variables[name]
            if any(var.sizes[d] < self._len(d) for d in self.growing if d in var.dims):
                v[tuple(row - 1 if d == "sample" else self._len(d) - 1 if d in self.growing
                        else 0 for d in v.dimensions)] = v.getncattr("_FillValue")

    def finish(self) -> bool:
        """Mark the file complete and close it; True when it must be rewritten first instead.

        That is when an interrupted run left rows past the committed ones (netCDF cannot
        shrink a dimension): the caller then runs :func:`seqacts.io.rewrite.rewrite_trimmed`.
        """
        overgrown = self._len("sample") > self.committed["sample"] or any(
            self._len(d) > self.committed[d] for d in self.growing)
        if not overgrown:
            try:
                with LOCK:
                    self.nc.setncatts({COMPLETE: 1})
                    self.nc.sync()
            except (RuntimeError, OSError) as err:
                errno_, reason = diagnose(self.path, 0, err)
                self._fail(errno_, reason, err, written=True)
        self.close()
        return overgrown

    def close(self) -> None:
        """Close the file; a failing close (after a failed write) is not raised over the
        error that caused it, and does not leave the file held open."""
        with LOCK:
            try:
                if self.nc.isopen():
                    self.nc.close()
            except (RuntimeError, OSError):
                release_descriptors(self.path)

