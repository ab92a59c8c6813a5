"""Reading and checking the command line's input files.

``--input`` (``.npy``, ``.pt``, ``.nc``) becomes one NumPy array laid out ``(sample, time,
feature)`` (``(sample, time)`` for integer token ids), its time labels and the per-sample labels
of a ``.nc`` input; ``--coords`` (``.csv``, ``.npy``, ``.nc``) becomes per-sample labels. Every
problem raises :class:`~seqacts.errors.CLIError` naming the file, what was found and the fix.
Only ``.pt`` files need torch, which is imported for them alone. :func:`open_acts` opens the
recordings ``info`` and ``report`` read: a file or a directory of shards.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cli_checks import one_line
from .errors import CLIError, CorruptFileError, SeqactsError
from .schema import SCHEMA_NAMES

__all__ = [
    "AXES",
    "RESERVED",
    "InputData",
    "count_nonfinite",
    "disk_size",
    "existing_file",
    "open_acts",
    "parse_layout",
    "read_coords",
    "read_input",
    "safe_load",
]

#: The axes of a model's input, in the order ``extract`` hands them to a batch-first model.
AXES: tuple[str, str, str] = ("sample", "time", "feature")
#: Names of the recorded schema that per-sample labels must not take.
RESERVED: frozenset[str] = SCHEMA_NAMES
NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")
INPUT_SUFFIXES = (".npy", ".pt", ".nc")
COORD_SUFFIXES = (".csv", ".npy", ".nc")


@dataclass
class InputData:
    """An input file's array, laid out ``(sample, time[, feature])``, and its labels."""

    array: np.ndarray
    time: np.ndarray | None = None
    coords: dict[str, np.ndarray] = field(default_factory=dict)
    #: Laid out by dimension names (a .nc variable with ``sample`` and ``time`` dims).
    named: bool = False
    #: Other variables of a .nc input with a ``sample`` dim (masks, scores): name -> (dims,
    #: values), ``sample`` first.
    extras: dict[str, tuple[tuple[str, ...], np.ndarray]] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.array.shape[0])


def existing_file(path: str, what: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` as a Path when it is a readable file with one of ``suffixes``."""
    p = Path(path)
    kinds = (
        ", ".join(suffixes[:-1]) + " or " + suffixes[-1] if len(suffixes) > 1 else "".join(suffixes)
    )
    if p.is_dir():
        raise CLIError(f"{what}: {path!r} is a directory; pass a {kinds or 'file'} file inside it")
    if not p.exists():
        raise CLIError(f"{what}: no such file {path!r}; check the path")
    if suffixes and p.suffix.lower() not in suffixes:
        raise CLIError(f"{what}: expected a {kinds} file, got {p.name!r}")
    try:
        with open(p, "rb"):
            pass
    except OSError as err:
        raise CLIError(
            f"{what}: cannot read {path!r} ({err.strerror}); check its permissions"
        ) from err
    return p


def parse_layout(text: str) -> tuple[str, ...]:
    """``"sample,feature,time"`` -> the file's axis names, checked to be a permutation of AXES."""
    parts = tuple(p.strip() for p in text.split(","))
    if sorted(parts) != sorted(AXES):
        raise CLIError(
            f"--layout: expected the axes sample, time and feature in the file's order, "
            f"separated by commas (e.g. sample,feature,time), got {text!r}"
        )
    return parts


def read_input(path: str, variable: str | None, layout: tuple[str, ...]) -> InputData:
    """Read ``--input`` and lay it out ``(sample, time, feature)``; check it holds numbers."""
    p = existing_file(path, "--input", INPUT_SUFFIXES)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        data = InputData(_load_npy(p, "--input"))
    elif suffix == ".pt":
        data = InputData(_load_pt(p, variable))
    else:
        data = _load_nc(p, variable)
        if data.named:
            layout = AXES
    data.array = _arrange(data.array, layout, p.name)
    return data


def _load_npy(p: Path, what: str) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except ValueError as err:
        if "Object arrays" in str(err):
            raise CLIError(
                f"{what}: {p.name} holds Python objects (dtype object), not numbers; save a "
                "numeric array, e.g. np.save(path, x.astype('float32'))"
            ) from err
        raise CLIError(f"{what}: cannot read {p.name} as a NumPy array (it is not a file written "
                       "by np.save); write the array with np.save") from err  # fmt: skip
    except (OSError, EOFError) as err:
        raise CLIError(f"{what}: cannot read {p.name} as a NumPy array ({err}); "
                       "write it with np.save") from err  # fmt: skip


def safe_load(path: Path, problem: str, fix: str) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU: tensors and containers, no code.

    Parameters
    ----------
    path : pathlib.Path
        A file written by ``torch.save``.
    problem, fix : str
        What could not be done and how to fix it: a failure raises :class:`CLIError` with
        ``"{problem} ({exception type}); {fix}"``.

    Returns
    -------
    object
        What the file holds.
    """
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CLIError(f"{problem} ({type(err).__name__}); {fix}") from err


def _load_pt(p: Path, variable: str | None) -> np.ndarray:
    import torch

    data = safe_load(p, f"--input: cannot load {p.name} as tensors",
                     "seqacts reads only tensors and dicts of tensors: save them with "
                     "torch.save(x, path) or np.save")
    if isinstance(data, Mapping):
        tensors = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
        key = variable or ("input" if "input" in tensors else None)
        if key is None and len(tensors) == 1:
            key = next(iter(tensors))
        if key not in tensors:
            raise CLIError(
                f"--input: {p.name} holds the tensors {sorted(tensors)}; pick one with --variable"
            )
        data = tensors[key]
    if not isinstance(data, torch.Tensor):
        raise CLIError(
            f"--input: {p.name} holds a {type(data).__name__}, not a tensor; save the input with "
            "torch.save(x, path)"
        )
    if data.dtype in (torch.bfloat16, torch.float16):
        data = data.float()
    return data.detach().cpu().numpy()


def _open_nc(p: Path, what: str) -> Any:
    import xarray as xr

    try:
        return xr.open_dataset(p)
    except (OSError, ValueError) as err:
        raise CLIError(f"{what}: cannot read {p.name} as netCDF ({err}); pass a .nc file "
                       "written by xarray or netCDF4") from err


def _load_nc(p: Path, variable: str | None) -> InputData:
    with _open_nc(p, "--input") as ds:
        names = [str(v) for v in ds.data_vars if ds[v].ndim >= 2]
        floats = [n for n in names if ds[n].dtype.kind == "f"]  # not masks or token ids
        name = variable or ("input" if "input" in names else names[0] if len(names) == 1
                            else floats[0] if len(floats) == 1 else None)
        if name not in ds.data_vars:
            raise CLIError(
                f"--input: {p.name} has the variables {names}; pick the input with --variable"
            )
        da = ds[name].load()
        if not {"sample", "time"} <= set(da.dims):
            return InputData(np.asarray(da.values))
        da = da.transpose("sample", "time", ...)
        coords = {
            str(k): np.asarray(v.values)
            for k, v in ds.variables.items()
            if v.dims == ("sample",) and k != "sample" and k != name
        }
        time = np.asarray(da["time"].values) if "time" in da.coords else None
        extras = {}
        for k, v in ds.data_vars.items():
            if k != name and "sample" in v.dims and v.dims != ("sample",):
                v = v.transpose("sample", ...)
                extras[str(k)] = (tuple(map(str, v.dims)), np.asarray(v.values))
        return InputData(np.asarray(da.values), time, coords, named=True, extras=extras)


def _arrange(x: np.ndarray, layout: tuple[str, ...], name: str) -> np.ndarray:
    """Check ``x`` holds numbers and lay it out as (sample, time, feature)."""
    kind = x.dtype.kind
    if kind not in "fiub":
        raise CLIError(f"--input: {name} holds {x.dtype} values, not numbers; save a float32 array")
    if x.size == 0:
        raise CLIError(
            f"--input: {name} is empty (shape {x.shape}); pass at least one sample of one step"
        )
    token_ids = kind in "iub" and x.ndim == 2
    if x.ndim != 3 and not token_ids:
        hint = (
            "for a single sequence save x[None] (shape (1, steps, features))"
            if x.ndim == 2
            else "a model input has 3 axes: reshape it (e.g. x.reshape(samples, steps, -1))"
        )
        raise CLIError(
            f"--input: expected 3 axes ({', '.join(layout)}), got shape {x.shape}; {hint}"
        )
    if token_ids:  # (sample, time) integer ids, e.g. for an nn.Embedding
        order = [a for a in layout if a != "feature"]
        return x if order == ["sample", "time"] else x.T
    x = np.transpose(x, [layout.index(a) for a in AXES])
    return np.ascontiguousarray(x)


def count_nonfinite(x: np.ndarray) -> tuple[int, int]:
    """How many values of ``x`` are NaN or infinite, and in how many samples (axis 0)."""
    if x.dtype.kind != "f":
        return 0, 0
    bad = ~np.isfinite(x)
    return int(bad.sum()), int(bad.reshape(x.shape[0], -1).any(axis=1).sum())


def read_coords(path: str, n_samples: int) -> dict[str, np.ndarray]:
    """Read ``--coords``: one label per sample in each column / field / variable."""
    p = existing_file(path, "--coords", COORD_SUFFIXES)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        coords = _coords_csv(p)
    elif suffix == ".npy":
        arr = _load_npy(p, "--coords")
        if arr.dtype.names:
            coords = {str(k): np.asarray(arr[k]) for k in arr.dtype.names}
        elif arr.ndim == 1:
            coords = {p.stem: arr}
        else:
            raise CLIError(
                f"--coords: {p.name} has shape {arr.shape}; expected one label per sample "
                "(a 1-D array, named after the file) or a structured array (one field per label)"
            )
    else:
        coords = _coords_nc(p, n_samples)
    coords.pop("sample", None)
    if not coords:
        raise CLIError(f"--coords: {p.name} holds no labels; give one column per label")
    for name, values in coords.items():
        if values.shape != (n_samples,):
            raise CLIError(
                f"--coords: {name!r} in {p.name} has {values.shape[0] if values.ndim else 0} "
                f"values but --input has {n_samples} samples; give one label per sample"
            )
        if name in RESERVED or not NAME.match(name):
            raise CLIError(
                f"--coords: {name!r} in {p.name} cannot name a label (a seqacts name, or not an "
                "identifier); rename it, e.g. is_anomaly"
            )
        if values.dtype.kind not in "biufUSM":
            raise CLIError(f"--coords: {name!r} in {p.name} holds {values.dtype} values; "
                           "use numbers, booleans, strings or datetimes")  # fmt: skip
    return coords


def _coords_csv(p: Path) -> dict[str, np.ndarray]:
    import pandas as pd

    try:
        table = pd.read_csv(p)
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise CLIError(f"--coords: cannot read {p.name} as CSV ({err}); write it with a header "
                       "row naming each label, one row per sample") from err  # fmt: skip
    out = {}
    for col in table.columns:
        values = table[col].to_numpy()
        if values.dtype == object:
            values = values.astype(str)
        out[str(col)] = values
    return out


def _coords_nc(p: Path, n_samples: int) -> dict[str, np.ndarray]:
    with _open_nc(p, "--coords") as ds:
        along = {str(k): np.asarray(v.values) for k, v in ds.variables.items()
                 if v.dims == ("sample",)}  # fmt: skip
        if along:
            return along
        return {str(k): np.asarray(v.values) for k, v in ds.variables.items()
                if v.ndim == 1 and v.size == n_samples}  # fmt: skip


def open_acts(path: str, what: str = "FILE") -> Any:
    """Open a seqacts netCDF file, or a directory of shards, lazily."""
    import seqacts

    p = Path(path)
    if p.is_dir():
        if not any(p.glob("part-*.nc")):
            raise CLIError(
                f"{what}: {path!r} is a directory without part-*.nc shards; pass a .nc file or a "
                "directory written by seqacts.extract_distributed"
            )
    else:
        existing_file(path, what)
    try:
        ds = seqacts.open_dataset(p)
    except SeqactsError as err:
        if not isinstance(err, CorruptFileError) or "no HDF5/netCDF4 signature" not in str(err):
            raise
        raise CLIError(f"{what}: cannot read {path} as netCDF (no HDF5/netCDF4 signature at "
                       "its start); pass a .nc file written by seqacts") from err
    except (OSError, ValueError, KeyError) as err:
        raise CLIError(f"{what}: cannot read {path} as netCDF ({one_line(err)}); pass a .nc "
                       "file written by seqacts") from err  # fmt: skip
    if "layer" not in ds.dims or "h" not in ds:
        raise CLIError(f"{what}: {path} is not a seqacts dataset (no 'layer' dimension or 'h'); "
                       "create one with `seqacts extract` or seqacts.extract(...).to_netcdf()")  # fmt: skip
    return ds


def disk_size(path: str) -> int:
    """Bytes of a file, or of the files of a shard directory."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.iterdir() if f.is_file())
    return p.stat().st_size
