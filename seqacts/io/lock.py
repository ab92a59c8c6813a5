"""seqacts' own writer lock: one writer per stream file, whatever HDF5's file locking does.

A writer creates ``.<name>.lock`` next to the file with ``O_CREAT | O_EXCL`` (atomic, also on
NFS v3+) holding its pid, host and start time, and removes it when done. A second writer, a
concurrent resume, or a reader is told which process holds the file. A lock left by a killed
process on this host (its pid no longer runs) is stale and taken over; a lock from another host
cannot be checked and is reported with its age, for the user to remove.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ..errors import DestinationError, StreamBusyError

__all__ = ["StreamLock", "lock_path", "lock_holder"]


def lock_path(path: Path) -> Path:
    """The lock file guarding ``path``."""
    return path.with_name(f".{path.name}.lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(lock: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written by its creator this instant, or garbage
    return info if isinstance(info, dict) else {}


def describe(info: dict[str, Any]) -> str:
    """'pid 123 on host h (since 10:02:03 UTC)' for a lock's content."""
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.get("started", 0)))
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} (since {since})"


def _stale(info: dict[str, Any]) -> bool:
    """Whether the lock's writer is gone: same host and its pid no longer runs."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    return info["pid"] != os.getpid() and not _alive(info["pid"])


def lock_holder(path: Path) -> dict[str, Any] | None:
    """The live writer holding ``path`` (pid, host, started), or None (also when it is this
    process)."""
    info = _read(lock_path(path))
    if info is None or _stale(info):
        return None
    if info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
        return None
    return info


class StreamLock:
    """Hold the writer lock of ``path`` from :meth:`acquire` to :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = lock_path(path)
        self.held = False

    def acquire(self) -> StreamLock:
        """Create the lock file, taking over a stale one; raise :class:`StreamBusyError` if a
        live process holds it, :class:`DestinationError` if the directory refuses files."""
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._take_over_stale()
                continue
            except OSError as err:
                raise DestinationError(
                    err.errno, f"cannot create files in {self.path.parent} ({err.strerror}); "
                    "pick a writable directory for the output", str(self.path)) from None
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return self
        held = _read(self.lock) or {}
        raise StreamBusyError(
            errno.EBUSY, f"{self.path} is being written by {describe(held)}; wait for it to "
            f"finish, or if that process is gone (e.g. on another host), remove {self.lock}")

    def _take_over_stale(self) -> bool:
        """Remove the lock if its writer is dead; raise if it is alive. True if removed."""
        info = _read(self.lock)
        if info is None:
            return True  # released meanwhile: retry
        if not info:  # its creator is writing it now: give it a moment
            time.sleep(0.05)
            info = _read(self.lock)
            if info is None:
                return True
        if not info or not _stale(info):
            raise StreamBusyError(
                errno.EBUSY, f"{self.path} is being written by {describe(info or {})}; wait "
                f"for it to finish, or if that process is gone (e.g. on another host), remove "
                f"{self.lock}")
        # Rename before deleting: of two processes taking over the same stale lock, only one
        # renames it; the other then finds the winner's fresh lock.
        grave = self.lock.with_name(f"{self.lock.name}.stale-{os.getpid()}")
        try:
            os.rename(self.lock, grave)
        except FileNotFoundError:
            return True
        moved = _read(grave)
        if moved is not None and moved != info:  # a live lock was renamed: put it back
            try:
                os.link(grave, self.lock)  # never over a lock created meanwhile
            except FileExistsError:
                pass
            grave.unlink(missing_ok=True)
            return False
        grave.unlink(missing_ok=True)
        return True

    def record(self, **fields: Any) -> None:
        """Add ``fields`` (e.g. ``committed=3584``) to the lock's content, replaced atomically,
        so that a reader is told how far the writer has got while HDF5 keeps the file shut."""
        if not self.held:
            return
        info = {**(_read(self.lock) or {}), **fields}
        tmp = self.lock.with_name(f"{self.lock.name}.new-{os.getpid()}")
        try:
            tmp.write_text(json.dumps(info))
            os.replace(tmp, self.lock)
        except OSError:
            tmp.unlink(missing_ok=True)  # the count is a courtesy: never fail the write for it

    def release(self) -> None:
        if self.held:
            self.held = False
            self.lock.unlink(missing_ok=True)

    def __enter__(self) -> StreamLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
