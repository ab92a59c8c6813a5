"""Is a stream file whole? Header and size checks, checksummed reads, and :func:`verify`.

Stream files store every numeric variable with HDF5's fletcher32 filter: each chunk carries a
checksum that HDF5 checks when reading it. netCDF-C reports every failure as ``NetCDF: HDF
error``; this module says which: a file being written (seqacts' lock), a broken header, a
truncated file (the superblock's end-of-file address lies past its size), or a corrupted chunk
(named by variable and sample range).
"""

from __future__ import annotations

import errno
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from ..errors import CorruptFileError, StreamBusyError, UnreadableFileError
from .lock import describe, lock_holder
from .ncfile import BATCHES, COMPLETE, LOCK, SIZES

__all__ = ["Superblock", "VerifyReport", "bad_samples", "damaged_metadata", "explain_unreadable",
           "header_problem", "is_damage", "read_superblock", "repair_truncated", "verify"]

SIGNATURE = b"\x89HDF\r\n\x1a\n"
SUPERBLOCK_OFFSETS = (0, 512, 1024, 2048)  # where HDF5 looks for the signature


@dataclass(frozen=True)
class Superblock:
    """What an HDF5 file's superblock says: where it starts and the end-of-file address."""

    at: int  # offset of the signature (0, 512, 1024 or 2048)
    eof: int  # the file's length as the superblock records it


def read_superblock(head: bytes) -> Superblock | str:
    """Parse the superblock in a file's first bytes (up to 4096), or say why it is broken."""
    at = next((o for o in SUPERBLOCK_OFFSETS if head[o : o + 8] == SIGNATURE), None)
    if at is None:
        return ("no HDF5/netCDF4 signature at its start (first bytes "
                f"{head[:8]!r}); it is not a netCDF4 file or its header was overwritten")
    sb = head[at:]
    version = sb[8]
    if version in (0, 1):
        offsets, base = sb[13], 24 if version == 0 else 28
    elif version in (2, 3):
        offsets, base = sb[9], 12
    else:
        return f"unknown HDF5 superblock version {version}"
    fmt = {4: "<I", 8: "<Q"}.get(offsets)
    if fmt is None:
        return f"HDF5 superblock claims {offsets}-byte addresses"
    base_addr = struct.unpack_from(fmt, sb, base)[0]
    return Superblock(at, int(at + base_addr + struct.unpack_from(fmt, sb, base + 2 * offsets)[0]))


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4096)


def _eof(path: Path) -> int | None:
    """The end-of-file address in ``path``'s HDF5 superblock, or None if unreadable."""
    try:
        sb = read_superblock(_head(path))
    except OSError:
        return None
    return sb.eof if isinstance(sb, Superblock) else None


def repair_truncated(path: Path) -> bool:
    """Give a truncated stream file back the length its header claims, if that makes every
    committed chunk read back; return whether it did (else the file is left as it was).

    A write that hit a file-size limit or a full disk leaves the header's end-of-file past the
    bytes that reached the disk; the missing tail held only the batch being written, which was
    never committed. Its bytes come back as a hole of zeros, and :func:`verify` (checksums)
    proves the committed batches intact before the file is used again.
    """
    eof, size = _eof(path), path.stat().st_size
    if eof is None or eof <= size:
        return False
    os.truncate(path, eof)
    try:
        ok = verify(path).ok
    except Exception:  # noqa: BLE001 - any failure means: not repairable
        ok = False
    if not ok:
        os.truncate(path, size)
    return ok


def header_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a whole HDF5 file (no signature, truncated), or None."""
    try:
        size = path.stat().st_size
        sb = read_superblock(_head(path))
    except OSError as err:
        return f"cannot read it ({err.strerror})"
    if isinstance(sb, str):
        return f"broken header: {sb} ({size} bytes)"
    if sb.eof > size:
        return (f"truncated: its header says {sb.eof} bytes but the file has "
                f"{size}; the end of the file was lost (disk full, file-size limit, or a copy "
                "cut short). If a write failed, resume=True recovers its committed batches")
    return None


def explain_unreadable(path: Path, err: BaseException, what: str = "open") -> OSError:
    """The error to raise when netCDF4 cannot open ``path``: busy, broken, or the original."""
    holder = lock_holder(path)
    if holder is not None:
        return StreamBusyError(
            getattr(err, "errno", None) or errno.EBUSY, f"{what}: {path} is being written by "
            f"{describe(holder)}; wait for it to finish (readers see its committed batches "
            "when HDF5 file locking is off: HDF5_USE_FILE_LOCKING=FALSE)")
    problem = header_problem(path)
    if problem is not None:
        return CorruptFileError(
            getattr(err, "errno", None) or errno.EIO, f"{what}: {path} is unreadable, {problem}. "
            "Recreate it (overwrite=True)", str(path))
    return UnreadableFileError(getattr(err, "errno", None) or errno.EIO,
                   f"{what}: cannot read {path} ({err}); if another program has it open for "
                   "writing, close it first (HDF5 locks open files)", str(path))


def is_damage(err: BaseException) -> bool:
    """Whether netCDF4 raised ``err`` because the file is damaged (not a missing attribute).

    netCDF4 reports a metadata block HDF5 cannot decode as ``RuntimeError`` or
    ``AttributeError`` with a ``NetCDF: ...`` message (e.g. "Can't open HDF5 attribute").
    """
    text = str(err)
    return (isinstance(err, (RuntimeError, AttributeError)) and text.startswith("NetCDF:")
            and "not found" not in text)


def damaged_metadata(path: Path, err: BaseException, what: str = "open") -> CorruptFileError:
    """The error for a file whose header opens but whose attributes or variables do not."""
    return CorruptFileError(
        errno.EIO, f"{what}: {path} is unreadable: part of its metadata (attributes or variable "
        f"descriptions) is damaged ({err}). Recreate it (overwrite=True); seqacts.verify(path) "
        "lists what else fails", str(path))


def _sample_range(start: int, stop: int) -> str:
    return f"samples {start}-{stop - 1}" if stop - start > 1 else f"sample {start}"


def bad_samples(var: netCDF4.Variable, start: int, stop: int) -> list[tuple[int, int]]:
    """The on-disk chunk rows of ``var`` within samples [start, stop) that fail to read."""
    axis = var.dimensions.index("sample")
    chunking = var.chunking()
    rows = int(chunking[axis]) if chunking != "contiguous" else max(stop - start, 1)
    bad: list[tuple[int, int]] = []
    for lo in range(start - start % rows, stop, rows):
        index = [slice(None)] * var.ndim
        index[axis] = slice(max(lo, start), min(lo + rows, stop))
        try:
            var[tuple(index)]
        except (RuntimeError, OSError):
            if bad and bad[-1][1] == max(lo, start):
                bad[-1] = (bad[-1][0], min(lo + rows, stop))
            else:
                bad.append((max(lo, start), min(lo + rows, stop)))
    return bad


def corrupt_chunk_error(path: Any, name: str, ranges: list[tuple[int, int]],
                        err: BaseException) -> CorruptFileError:
    where = ", ".join(_sample_range(a, b) for a, b in ranges) or "some chunk"
    return CorruptFileError(
        errno.EIO, f"{path}: variable {name!r}, {where}: a chunk fails its checksum or cannot be "
        f"decoded ({err}); the file is corrupted there. Run `seqacts info --verify` for the "
        "whole list; rewrite the file from its inputs", str(path))


@dataclass
class VerifyReport:
    """What :func:`verify` found. ``ok`` is True when every chunk read back and checked."""

    path: Path
    ok: bool = True
    samples: int = 0
    batches: int = 0
    complete: bool = False
    checksummed: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    chunks: int = 0
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.path}: {'OK' if self.ok else 'PROBLEMS FOUND'}"]
        if self.samples or self.batches:
            lines.append(f"  {self.samples} committed samples in {self.batches} batches, "
                         f"{'complete' if self.complete else 'unfinished'}")
        if self.chunks:
            lines.append(f"  read {self.chunks} chunk reads, {self.bytes_read / 1e6:.1f} MB; "
                         f"checksummed variables: {len(self.checksummed)}, without checksums: "
                         f"{', '.join(self.unchecked) or 'none'}")
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _read_variable(nc: netCDF4.Dataset, name: str, var: netCDF4.Variable, committed: int,
                   report: VerifyReport) -> None:
    """Read ``var``'s committed samples in spans of whole chunks (about 16 MiB), counting into
    ``report`` what was read and which sample ranges fail."""
    if "sample" not in var.dimensions:
        try:
            report.bytes_read += np.asarray(var[...]).nbytes
            report.chunks += 1
        except (RuntimeError, OSError) as err:
            report.problems.append(f"variable {name!r}: unreadable ({err})")
        return
    axis = var.dimensions.index("sample")
    rows = int(var.chunking()[axis]) if var.chunking() != "contiguous" else 64
    step = max(rows, rows * max(1, 2**24 // max(rows * var.dtype.itemsize * int(np.prod(
        [len(nc.dimensions[d]) for d in var.dimensions if d != "sample"])), 1)))
    for lo in range(0, committed, step):
        hi = min(lo + step, committed)
        index = [slice(None)] * var.ndim
        index[axis] = slice(lo, hi)
        try:
            report.bytes_read += np.asarray(var[tuple(index)]).nbytes
            report.chunks += -(-(hi - lo) // rows)
        except (RuntimeError, OSError) as err:
            for a, b in bad_samples(var, lo, hi):
                report.problems.append(
                    f"variable {name!r}, {_sample_range(a, b)}: fails its "
                    f"checksum or cannot be decoded ({err})")


def verify(path: str | os.PathLike) -> VerifyReport:
    """Read every committed chunk of a stream (or any netCDF4) file and report what fails.

    Parameters
    ----------
    path : path
        A file written by :func:`seqacts.extract_to_netcdf`.

    Returns
    -------
    VerifyReport
        ``ok``, committed ``samples``/``batches``, variables with and without checksums, and
        ``problems``: a truncated file or broken header, and each variable's failing sample
        ranges. Raises :class:`~seqacts.errors.StreamBusyError` if a writer holds the file.
    """
    path = Path(path)
    report = VerifyReport(path)
    holder = lock_holder(path)
    if holder is not None:
        raise StreamBusyError(errno.EBUSY, f"verify: {path} is being written by {describe(holder)}; "
                              "verify it when that run has finished")
    problem = header_problem(path)
    if problem is not None:
        report.ok, report.problems = False, [problem]
        return report
    try:
        with LOCK:  # xarray's HDF5 lock: Dask threads may still be reading files
            nc = netCDF4.Dataset(path)
    except (OSError, RuntimeError, AttributeError) as err:
        report.ok, report.problems = False, [f"cannot open it: {err}"]
        return report
    with LOCK, nc:
        nc.set_auto_maskandscale(False)
        try:
            attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
            sizes = json.loads(attrs.get(SIZES, "{}"))
        except (RuntimeError, AttributeError, ValueError) as err:
            report.problems.append(f"its global attributes are damaged ({err})")
            attrs, sizes = {}, {}
        committed = int(sizes.get("sample", len(nc.dimensions.get("sample", ()))))
        report.samples, report.batches = committed, int(attrs.get(BATCHES, 0))
        report.complete = bool(attrs.get(COMPLETE, 0))
        for name, var in nc.variables.items():
            try:
                if var.dtype is str:
                    continue
                checked = bool(var.filters().get("fletcher32"))
            except (RuntimeError, AttributeError) as err:
                report.problems.append(f"variable {name!r}: its description is damaged ({err})")
                continue
            (report.checksummed if checked else report.unchecked).append(name)
            _read_variable(nc, name, var, committed, report)
    report.ok = not report.problems
    return report
