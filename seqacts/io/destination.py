"""Where a stream file goes: the destination checked before any batch runs, the empty file
created exclusively (never over a file that appeared meanwhile unless overwriting), and the
file's ending: finished and put in place, or on a failure closed and its temporary removed."""

from __future__ import annotations

import errno
import os
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import xarray as xr
from torch import nn

from ..capture.specs import nonlinearity
from ..errors import DestinationError, OutputExistsError
from ..kinds import base_kind, find_kind, tanh_bounded_kinds
from .ncfile import PACK_RANGES, Writer, create, rows_per_chunk
from .reading import rewrite_trimmed

__all__ = ["Output", "check_destination", "create_exclusive"]


def _squashes(ds: xr.Dataset, model: nn.Module | None) -> bool:
    """Whether every layer's h lies in [-1, 1] (tanh outputs, no projection)."""
    for kind, module, n_units, n_cell in zip(
        ds["kind"].values, ds["module"].values, ds["n_units"].values, ds["n_cell_units"].values,
        strict=True,
    ):
        spec = find_kind(str(kind))
        if spec is None or (spec.by_nonlinearity and model is None):
            return False  # an unknown kind, or one whose nonlinearity is not in the dataset
        if model is not None:
            kind = base_kind(str(kind), nonlinearity(model.get_submodule(str(module))))
        if kind not in tanh_bounded_kinds() or n_units != n_cell:
            return False
    return True


def check_destination(path: Path) -> None:
    """Raise :class:`DestinationError` now, before any batch runs, if ``path`` cannot be one."""
    if path.is_dir():
        raise DestinationError(errno.EISDIR, f"{path} is a directory; pass a file path inside "
                               f"it, e.g. {path / 'activations.nc'}", str(path))
    if not path.parent.is_dir():
        raise DestinationError(errno.ENOENT, f"the directory {path.parent} does not exist; "
                               "create it first (e.g. Path(...).parent.mkdir(parents=True))",
                               str(path))
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise DestinationError(errno.EACCES, f"the directory {path.parent} is not writable; "
                               "pick another output path", str(path))


def create_exclusive(path: Path, ds: xr.Dataset, options: dict[str, Any], model: nn.Module | None,
                     *, overwrite: bool = False) -> None:
    """Create the empty stream file for batches like ``ds``: written under a temporary name,
    then linked into place, failing if ``path`` appeared meanwhile (replacing it only when
    ``overwrite``)."""
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
        create(tmp, ds.isel(sample=slice(0, 0)), options, packed, rows_per_chunk(ds))
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _link_new(tmp: Path, path: Path) -> None:
    """Put ``tmp`` at ``path`` unless something is there already."""
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:  # a filesystem without hard links: exclusive create, then rename over it
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            os.close(fd)
            os.replace(tmp, path)
    except FileExistsError:
        raise OutputExistsError(
            errno.EEXIST, f"{path} was created by another process while this run started; "
            "pass overwrite=True to replace it, or resume=True to finish it", str(path)) from None


class Output:
    """The file a stream writes, from its creation to its end; a context manager.

    With ``overwrite`` the file is written under a temporary name beside ``path`` and renamed
    over it by :meth:`finish`, so a failure keeps the old file. Leaving the block on an
    exception closes the writer and removes that temporary file.

    Parameters
    ----------
    path : pathlib.Path
        The destination.
    overwrite : bool
        Replace ``path`` at the end rather than create it.
    writer : Writer, optional
        The writer of a file already there (a resumed stream).
    """

    def __init__(self, path: Path, *, overwrite: bool, writer: Writer | None = None) -> None:
        self.path = path
        self.overwrite = overwrite
        self.file = path.with_name(f".{path.name}.tmp-{os.getpid()}") if overwrite else path
        self.writer = writer

    def create(self, ds: xr.Dataset, options: dict[str, Any], model: nn.Module | None) -> Writer:
        """Create the file for batches like ``ds`` (:func:`create_exclusive`) and open it."""
        create_exclusive(self.file, ds, options, model, overwrite=self.overwrite)
        self.writer = Writer(self.file)
        return self.writer

    def finish(self) -> None:
        """Mark the file complete (rewriting it without uncommitted rows if an interrupted run
        left some) and, when overwriting, rename it over ``path``."""
        assert self.writer is not None, "finish() before create()"
        if self.writer.finish():
            rewrite_trimmed(self.file)
        if self.overwrite:
            os.replace(self.file, self.path)

    def __enter__(self) -> Output:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            return
        if self.writer is not None:
            self.writer.close()
        if self.overwrite:
            self.file.unlink(missing_ok=True)
