"""Streaming extraction to netCDF: one growing file, bounded memory, crash-safe resume.

Each batch runs through :func:`seqacts.extract` and is appended along the unlimited ``sample``
dimension of one netCDF4 file, which is then synced. A batch is *committed* once the attribute
counting committed samples has been synced after it, so a process killed at any point (even
``kill -9``) leaves a file holding every committed batch, and ``resume=True`` continues it.
netCDF4-python writes the file directly (``Dataset.to_netcdf(mode="a")`` cannot append along a
dimension) following xarray's conventions, so ``xr.open_dataset`` reads back the same dataset
that :func:`seqacts.extract` returns in memory.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from .capture import Recorder
from .errors import SeqactsError
from .extract import extract

__all__ = [
    "COMPRESSIONS",
    "PACK_RANGES",
    "IncompleteStreamWarning",
    "StreamMismatchError",
    "extract_to_netcdf",
]

#: Lossless filters for ``compression=``: netCDF4 ``createVariable`` arguments. zstd gets the
#: shuffle filter too (set through the C library: netCDF4-python only shuffles for zlib).
COMPRESSIONS: dict[str, dict[str, Any]] = {
    "zlib": {"compression": "zlib", "complevel": 1, "shuffle": True},
    "zstd": {"compression": "zstd", "complevel": 1},
}

#: Variables ``pack="int16"`` stores as scaled int16, with the range their values cannot leave.
#: ``h``/``h_n`` only when every recorded layer squashes its output (tanh, no projection).
PACK_RANGES: dict[str, tuple[float, float]] = {
    "h": (-1.0, 1.0),
    "h_n": (-1.0, 1.0),
    "input_gate": (0.0, 1.0),
    "forget_gate": (0.0, 1.0),
    "output_gate": (0.0, 1.0),
    "reset_gate": (0.0, 1.0),
    "update_gate": (0.0, 1.0),
    "cell_gate": (-1.0, 1.0),
    "new_gate": (-1.0, 1.0),
}
SQUASHING_KINDS = ("LSTM", "GRU", "RNN_TANH", "LSTMCell", "GRUCell")
PACK_MAX = 32766  # int16 codes -32766..32766; -32767 is netCDF's default short _FillValue
PACK_FILL = np.int16(-32767)
PACK_BLOCK = 2**18  # values packed per step
FIXED_DIMS = ("layer", "direction", "unit")  # set by the model; every other dim may grow
CHUNK_BYTES = 2**21  # ~2 MiB chunks: one sample or one layer reads a few chunks, not the file
WRITE_CACHE = 2**23  # HDF5 chunk cache per variable while writing (netCDF's default: 64 MiB)

# Bookkeeping attributes (global): committed sizes of the growing dims, batches, options.
COMPLETE = "seqacts_stream_complete"
SAMPLES = "seqacts_stream_samples"
BATCHES = "seqacts_stream_batches"
SIZES = "seqacts_stream_sizes"
OPTIONS = "seqacts_stream_options"

try:  # share xarray's lock: netCDF-C/HDF5 are not thread-safe, and dask reads use this lock
    from xarray.backends.netCDF4_ import NETCDF4_PYTHON_LOCK as LOCK
except ImportError:  # pragma: no cover - older/newer xarray layout
    LOCK = threading.Lock()


class StreamMismatchError(SeqactsError, ValueError):
    """``resume=True`` met a file written with other layers, options or model weights."""


class IncompleteStreamWarning(UserWarning):
    """The opened file was not finished (an interrupted stream); it holds committed batches."""


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


def _model_hash(model: nn.Module) -> str:
    """sha1 of every parameter and buffer (names, shapes, dtypes and values)."""
    digest = hashlib.sha1()
    for name, value in model.state_dict().items():
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _squashes(ds: xr.Dataset, model: nn.Module) -> bool:
    """Whether every layer's h lies in [-1, 1] (tanh outputs, no projection)."""
    for kind, module, n_units, n_cell in zip(
        ds["kind"].values, ds["module"].values, ds["n_units"].values, ds["n_cell_units"].values,
        strict=True,
    ):
        if kind == "RNNCell":
            kind = "RNN_TANH" if model.get_submodule(str(module)).nonlinearity == "tanh" else ""
        if kind not in SQUASHING_KINDS or n_units != n_cell:
            return False
    return True


def _pack(x: np.ndarray, name: str, lo: float, hi: float) -> np.ndarray:
    """Scale [lo, hi] onto int16 codes -32766..32766 and NaN onto the fill value."""
    scale, offset = np.float32(PACK_MAX / ((hi - lo) / 2)), np.float32((hi + lo) / 2)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.size, np.int16)
    buf = np.empty(min(PACK_BLOCK, flat.size), np.float32)
    top, bottom = -np.inf, np.inf
    for start in range(0, flat.size, PACK_BLOCK):  # cache-sized blocks: 2x whole-array speed
        q = buf[: min(PACK_BLOCK, flat.size - start)]
        np.subtract(flat[start : start + q.size], offset, out=q)
        q *= scale
        np.rint(q, out=q)
        np.nan_to_num(q, copy=False, nan=float(PACK_FILL))
        top, bottom = max(top, float(q.max())), min(bottom, float(q.min()))
        out[start : start + q.size] = q
    if top > PACK_MAX or bottom < PACK_FILL:
        raise ValueError(
            f"pack='int16': {name} has values outside [{lo}, {hi}] (e.g. a GRU given an initial "
            f"state beyond [-1, 1]); int16 packing would clip them. Use pack=None for this model"
        )
    return out.reshape(x.shape)


def _rows(ds: xr.Dataset) -> int:
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
                _define(nc, str(name), var, options["compression"], packed.get(str(name)),
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
            nc.sync()
        finally:
            nc.close()


def _padded_json(obj: Any) -> str:
    # Fixed-size attribute values are rewritten in place; a resized one may move in the file.
    text = json.dumps(obj)
    return text.ljust(-(-len(text) // 256) * 256)


def _define(nc: netCDF4.Dataset, name: str, var: xr.Variable, compression: str | None,
            pack: tuple[float, float] | None, rows: int) -> None:
    dims = tuple(map(str, var.dims))
    if var.dtype.kind in "mM":  # time labels: CF-encoded, as xarray would
        var = xr.conventions.encode_cf_variable(var, name=name)
    if var.dtype.kind in "OUS":
        nc.createVariable(name, str, dims)[:] = np.asarray(var.values, dtype=object)
        nc[name].setncatts(var.attrs)
        return
    if var.dtype.kind not in "fiu":
        raise TypeError(f"{name}: cannot stream a {var.dtype} variable; expected float or int")
    dtype = np.dtype(np.float32) if var.dtype == np.float16 else var.dtype
    kwargs: dict[str, Any] = {}
    if var.dtype.kind == "f":
        kwargs["fill_value"] = PACK_FILL if pack else dtype.type(np.nan)
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
        lo, hi = pack
        attrs.update(scale_factor=dtype.type((hi - lo) / 2 / PACK_MAX),
                     add_offset=dtype.type((hi + lo) / 2))
    v.setncatts(attrs)
    if "sample" not in dims:
        v[:] = var.values.astype(dtype, copy=False)


class Writer:
    """An open stream file: appends batches along ``sample``, grows dims, commits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with LOCK:
            self.nc = netCDF4.Dataset(path, "a")
            self.nc.set_auto_maskandscale(False)
        attrs = {k: self.nc.getncattr(k) for k in self.nc.ncattrs()}
        self.options: dict[str, Any] = json.loads(attrs[OPTIONS])
        self.committed: dict[str, int] = json.loads(attrs[SIZES])
        self.batches = int(attrs[BATCHES])
        self.complete = bool(attrs[COMPLETE])
        self.growing = [d for d in self.nc.dimensions if d not in FIXED_DIMS and d != "sample"]
        self.rows = sorted((n for n, v in self.nc.variables.items() if "sample" in v.dimensions),
                           key=lambda n: n == "sample")  # the sample coordinate last
        self.packed = {n: PACK_RANGES[n] for n, v in self.nc.variables.items()
                       if v.dtype == np.int16}
        for name in self.rows:  # whole chunks are written: a big cache only holds memory
            self.nc[name].set_var_chunk_cache(size=WRITE_CACHE)
        self.chunk = min([int(v.chunking()[0]) for v in self.nc.variables.values()
                          if v.filters().get("complevel")] or [1])

    def _len(self, dim: str) -> int:
        return len(self.nc.dimensions[dim])

    def append(self, ds: xr.Dataset) -> int:
        """Write one batch after the committed samples and commit it; return bytes written."""
        start, n = self.committed["sample"], ds.sizes["sample"]
        if set(map(str, ds.variables)) != set(self.nc.variables):
            raise StreamMismatchError(
                f"this batch's dataset has variables {sorted(map(str, ds.variables))} but the file "
                f"has {sorted(self.nc.variables)}; every batch must record the same modules")
        if start % self.chunk:
            warnings.warn(
                f"compression: this batch starts at sample {start}, inside a compressed chunk of "
                f"{self.chunk} samples that a committed batch wrote; a crash now could lose that "
                f"chunk. Use batch sizes that are multiples of {self.chunk}", stacklevel=4)
        data: dict[str, np.ndarray] = {}  # encode outside the lock (lazy input reads take it)
        for name in self.rows:
            data[name] = np.asarray(ds.variables[name].values)
            if name == "sample":
                data[name] = np.arange(start, start + n) + self.options["first_sample"]
            elif name in self.packed:
                data[name] = _pack(data[name], name, *self.packed[name])
            elif data[name].dtype == np.float16:
                data[name] = data[name].astype(np.float32)
        grown = {d: ds[d].values for d in self.growing if d in ds.variables and ds.sizes[d] > (
            self.committed[d])}
        with LOCK:
            for d, values in grown.items():
                self.nc[d][: len(values)] = values
            for name, values in data.items():
                dims = ds.variables[name].dims
                self.nc[name][tuple(slice(start, start + n) if d == "sample" else slice(0, s)
                                    for d, s in zip(dims, values.shape, strict=True))] = values
            self._pad(start + n, ds)
            self.committed = {"sample": start + n, **{d: max(self.committed[d], ds.sizes[d])
                                                      for d in self.growing}}
            self.batches += 1
            self.nc.setncatts({SAMPLES: start + n, BATCHES: self.batches,
                               SIZES: _padded_json(self.committed)})
            self.nc.sync()
        return sum(v.nbytes for v in data.values())

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

    def finish(self) -> None:
        """Mark the file complete (first rewriting it if an interrupted run left extra rows)."""
        overgrown = self._len("sample") > self.committed["sample"] or any(
            self._len(d) > self.committed[d] for d in self.growing)
        if not overgrown:
            with LOCK:
                self.nc.setncatts({COMPLETE: 1})
                self.nc.sync()
        self.close()
        if overgrown:
            from .scale import rewrite_trimmed

            rewrite_trimmed(self.path)

    def close(self) -> None:
        with LOCK:
            if self.nc.isopen():
                self.nc.close()


def _fingerprint(model: nn.Module, rec: Recorder, modules: Any, compression: str | None,
                 pack: str | None, first_sample: int, time: Any = None) -> dict[str, Any]:
    cls = type(model)
    labels = None if time is None else hashlib.sha1(
        np.asarray(pd.Index(time).astype(str)).astype("U").tobytes()).hexdigest()
    return {
        "layers": [s.label for s in rec.specs],
        "internals": list(rec.internals),
        "modules": [modules] if isinstance(modules, str) else None if modules is None else list(
            modules),
        "compression": compression,
        "pack": pack,
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "model_weights": _model_hash(model),
        "training": model.training,
        "first_sample": first_sample,
        "time_labels": labels,
    }


def _check_resume(path: Path, expected: dict[str, Any]) -> bool:
    """Raise unless ``path`` is a stream written with ``expected``; return whether complete."""
    try:
        with LOCK, netCDF4.Dataset(path) as nc:
            found, complete = json.loads(nc.getncattr(OPTIONS)), bool(nc.getncattr(COMPLETE))
    except OSError as err:
        raise OSError(f"resume: cannot read {path} ({err}); if another process is writing it, "
                      "wait for it (HDF5 locks open files)") from err
    except (AttributeError, ValueError) as err:
        raise StreamMismatchError(f"resume: {path} is not a seqacts stream file ({err})") from err
    diff = [f"{k}: file has {found.get(k)!r}, this call {v!r}" for k, v in expected.items()
            if found.get(k) != v and k != "model_weights"]
    if found.get("model_weights") != expected["model_weights"]:
        diff.append("model_weights: the model's parameters or buffers differ from the file's")
    if diff:
        raise StreamMismatchError(
            f"resume: {path} was written with other options or another model ("
            + "; ".join(diff) + "). Pass the same model and options, or overwrite=True to start over"
        )
    return complete


def _label_time(ds: xr.Dataset, labels: Any) -> xr.Dataset:
    """Give a batch the whole label sequence as ``time`` (shorter batches: NaN-padded)."""
    if ds.sizes["time"] > len(labels):
        raise ValueError(f"time: {len(labels)} labels, but a batch has {ds.sizes['time']} "
                         "steps; pass one label per step of the longest batch")
    labels = pd.Index(labels)
    ds = ds.assign_coords(time=labels[: ds.sizes["time"]])
    return ds if ds.sizes["time"] == len(labels) else ds.reindex(time=labels)


def _model_args(batch: Any, inputs: Callable[[Any], Any] | None) -> tuple[tuple, dict]:
    if inputs is not None:
        batch = inputs(batch)
    if isinstance(batch, dict):
        return (), batch
    return (tuple(batch), {}) if isinstance(batch, (tuple, list)) else ((batch,), {})


def _total_samples(batches: Iterable[Any]) -> int | None:
    """Samples a DataLoader will yield, when it says so."""
    sampler, size = getattr(batches, "sampler", None), getattr(batches, "batch_size", None)
    if sampler is None or not size or not hasattr(sampler, "__len__"):
        return None
    n = len(sampler)
    return n - n % size if getattr(batches, "drop_last", False) else n


def extract_to_netcdf(
    model: nn.Module,
    batches: Iterable[Any],
    path: str | os.PathLike,
    *,
    layers: str | Iterable[str] | None = None,
    internals: bool | Collection[str] = False,
    modules: str | Iterable[str] | None = None,
    inputs: Callable[[Any], Any] | None = None,
    time: Sequence[Any] | None = None,
    compression: str | None = None,
    pack: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Run ``model`` over ``batches`` and append each batch's activations to one netCDF file.

    Memory stays that of one batch. After every batch the file is synced and its committed
    sample count updated, so a killed run leaves every finished batch readable and
    ``resume=True`` finishes it. Open the result with :func:`seqacts.open_dataset` (lazy, Dask)
    or ``xr.open_dataset``; it equals ``xr.concat`` of per-batch :func:`seqacts.extract` results
    (``sample`` numbered 0..N-1, ``time`` padded with NaN to the longest batch).

    Parameters
    ----------
    model : torch.nn.Module
        The model, as for :func:`seqacts.extract`.
    batches : iterable
        A DataLoader, generator, list...: each item a tensor, a tuple/list of positional
        arguments or a dict of keyword arguments (after ``inputs``).
    path : str or path-like
        The netCDF4 file to write.
    layers, internals, modules
        As for :func:`seqacts.extract`.
    inputs : callable, optional
        Maps a batch to the model's arguments, e.g. ``lambda b: (b[0],)`` for ``(x, y)`` batches.
    time : sequence, optional
        Labels for the ``time`` coordinate (e.g. a ``pandas.DatetimeIndex``), one per step of
        the longest batch; the file's ``time`` then has exactly these labels.
    compression : {None, "zlib", "zstd"}, default None
        Lossless compression of every per-sample variable (zstd with byte shuffle). Float
        activations barely compress (ratio ~1.1-1.2) and zlib is ~15x slower; see the README.
    pack : {None, "int16"}, default None
        Store variables with a known range (gates; ``h``/``h_n`` of tanh layers without
        projection) as int16 with ``scale_factor``/``add_offset`` (xarray decodes them):
        half the size, absolute error <= 1.6e-5. Other variables stay float.
    overwrite : bool, default False
        Replace an existing ``path``; the new file is written under a temporary name and
        renamed at the end, so a failure keeps the old file.
    resume : bool, default False
        Continue an interrupted file: the first batches already committed are skipped (not
        run). The file must have been written with the same layers, options and model weights
        (else :class:`StreamMismatchError`). A missing file starts afresh.
    progress : bool, default True
        Show a tqdm bar in samples (with MB/s).

    Returns
    -------
    pathlib.Path
        ``path``, holding ``h`` (sample, layer, direction, time, unit) and the rest of the
        :func:`seqacts.extract` schema, plus ``seqacts_stream_*`` bookkeeping attributes.
    """
    if compression not in (None, *COMPRESSIONS):
        raise ValueError(f"compression: expected None, 'zlib' or 'zstd', got {compression!r}")
    if pack not in (None, "int16"):
        raise ValueError(f"pack: expected None or 'int16', got {pack!r}")
    opts = dict(layers=layers, internals=internals, modules=modules, inputs=inputs,
                compression=compression, pack=pack, time=time)
    return stream(model, batches, Path(path), opts, overwrite=overwrite, resume=resume,
                  progress=progress)


def stream(model: nn.Module, batches: Iterable[Any], path: Path, opts: dict[str, Any], *,
           overwrite: bool = False, resume: bool = False, progress: bool = True,
           first_sample: int = 0) -> Path:
    """:func:`extract_to_netcdf` for samples numbered from ``first_sample`` (one shard)."""
    if overwrite and resume:
        raise ValueError("overwrite=True and resume=True contradict each other; pick one")
    rec = Recorder(model, layers=opts["layers"], internals=opts["internals"],
                   modules=opts["modules"])  # resolves names; fails early on a bad one
    expected = _fingerprint(model, rec, opts["modules"], opts["compression"], opts["pack"],
                            first_sample, opts.get("time"))
    writer: Writer | None = None
    if path.exists() and not (overwrite or resume):
        raise FileExistsError(
            f"{path} exists; pass overwrite=True to replace it, or resume=True to finish an "
            "interrupted stream into it")
    if path.exists() and resume:
        if _check_resume(path, expected):
            return path
        try:
            writer = Writer(path)
        except OSError as err:
            raise OSError(f"resume: cannot append to {path} ({err}); HDF5 locks a file that "
                          "another process has open, e.g. in xarray: close it first") from err
    target = path.with_name(f".{path.name}.tmp-{os.getpid()}") if overwrite else path
    skip = writer.batches if writer else 0
    bar = tqdm(total=_total_samples(batches), initial=writer.committed["sample"] if writer else 0,
               unit=" samples", desc=path.name, disable=not progress, dynamic_ncols=True)
    sized, started, nbytes, i = hasattr(batches, "__len__"), time.perf_counter(), 0, -1
    try:
        for i, batch in enumerate(batches):
            if i < skip:
                continue
            args, kwargs = _model_args(batch, opts["inputs"])
            ds = extract(model, *args, layers=opts["layers"], internals=opts["internals"],
                         modules=opts["modules"], **kwargs)
            if opts.get("time") is not None:
                ds = _label_time(ds, opts["time"])
            if writer is None:
                _create_atomic(target, ds, expected, model)
                writer = Writer(target)
            nbytes += writer.append(ds)
            if bar.total is None and sized:  # estimate from the first batch's size
                bar.total = len(batches) * ds.sizes["sample"]  # type: ignore[arg-type]
            bar.set_postfix_str(f"{nbytes / 1e6 / (time.perf_counter() - started):.0f} MB/s",
                                refresh=False)
            bar.update(ds.sizes["sample"])
        if writer is None:
            raise ValueError("batches: the iterable yielded no batch; nothing to write")
        if i + 1 < skip:
            raise StreamMismatchError(
                f"resume: {path} already holds {skip} batches but batches yielded only {i + 1}; "
                "pass the same batches, in the same order")
        writer.finish()
        if overwrite:
            os.replace(target, path)
    except BaseException:
        if writer is not None:
            writer.close()
        if overwrite:
            target.unlink(missing_ok=True)
        raise
    finally:
        bar.total = bar.n
        bar.close()
    return path


def _create_atomic(path: Path, ds: xr.Dataset, options: dict[str, Any], model: nn.Module) -> None:
    """Create the empty file under a temporary name and rename it: never a half-made file."""
    packed = {}
    if options["pack"]:
        squash = _squashes(ds, model)
        packed = {n: r for n, r in PACK_RANGES.items()
                  if n in ds.data_vars and (squash or n not in ("h", "h_n"))}
        if not packed:
            warnings.warn("pack='int16': no recorded variable has a known range (gates, or h of "
                          "tanh layers); storing float", stacklevel=4)
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    try:
        create(tmp, ds.isel(sample=slice(0, 0)), options, packed, _rows(ds))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
