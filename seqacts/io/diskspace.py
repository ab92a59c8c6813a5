"""Why a write can fail, said before writing when possible and after it otherwise.

netCDF-C reports every failed HDF5 write as ``NetCDF: HDF error``, without the errno. The cause
is nearly always one of two limits, both checkable: free space on the filesystem (``ENOSPC``)
and the process's file-size limit, ``ulimit -f`` (``EFBIG``; Python ignores ``SIGXFSZ``, so the
write fails instead of killing the process). :func:`preflight` checks a batch's bytes against
both before it is written; :func:`diagnose` names the limit after a failure, and
:func:`release_descriptors` lets go of a file HDF5 could not close after one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
from pathlib import Path

__all__ = ["MARGIN", "diagnose", "preflight", "release_descriptors"]

MARGIN = 2**16  # HDF5 metadata written with a batch (chunk index, attributes), plus 1%


def _limit() -> int | None:
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return None


def preflight(path: Path, nbytes: int) -> tuple[int, str] | None:
    """``(errno, reason)`` if writing ``nbytes`` more to ``path`` cannot fit, else None."""
    need = nbytes + nbytes // 100 + MARGIN
    limit = _limit()
    if limit is not None and _size(path) + need > limit:
        return errno.EFBIG, (f"the file would grow to ~{(_size(path) + need) / 1e6:.1f} MB, past "
                             f"this process's file-size limit (ulimit -f) of {limit / 1e6:.1f} MB")
    free = _free(path)
    if free is not None and need > free:
        return errno.ENOSPC, (f"the batch needs ~{need / 1e6:.1f} MB and {path.parent} has "
                              f"{free / 1e6:.1f} MB free")
    return None


def diagnose(path: Path, nbytes: int, err: BaseException) -> tuple[int | None, str]:
    """``(errno, reason)`` for a failed write of ``nbytes`` to ``path`` (errno None: unknown)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return err.errno, os.strerror(err.errno)
    limit = _limit()
    if limit is not None and _size(path) + nbytes >= limit - MARGIN:
        return errno.EFBIG, (f"{os.strerror(errno.EFBIG)}: the file reached this process's "
                             f"file-size limit (ulimit -f) of {limit / 1e6:.1f} MB")
    free = _free(path)
    if free is not None and free < nbytes + MARGIN:
        return errno.ENOSPC, (f"{os.strerror(errno.ENOSPC)}: {path.parent} has "
                              f"{free / 1e6:.1f} MB free")
    return None, f"{type(err).__name__}: {err}"


def release_descriptors(path: Path) -> None:
    """Point this process's descriptors of ``path`` at /dev/null.

    After a failed write, HDF5 cannot close the file: it keeps the descriptor, and with it the
    file lock that makes every other process's open fail. Its later writes go to /dev/null.
    """
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return
    target = os.path.realpath(path)
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for entry in fd_dir.iterdir():
            with contextlib.suppress(OSError, ValueError):
                if os.readlink(entry) == target:
                    os.dup2(null, int(entry.name))
    finally:
        os.close(null)
