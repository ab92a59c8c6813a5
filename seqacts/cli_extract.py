"""How ``seqacts extract`` writes its file without losing or leaking work.

A new destination is written in place, so a run stopped by Ctrl-C, a crash or ``kill -9``
leaves it holding every committed batch, and ``--resume`` finishes it through the API's
verified resume (:func:`seqacts.extract_to_netcdf` with ``resume=True``). Replacing a file
(``--overwrite``) writes ``.NAME.tmp-PID`` beside it and renames it over the old file at the
end; a temporary left by a run that died is found by the next run on the same destination
and resumed (``--resume``) or removed, said in one line. ``info`` and ``report`` on a file
being written name the writing process and the samples committed so far
(:func:`writing_note`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import CLIError

__all__ = [
    "Plan",
    "attach_variables",
    "check_not_input",
    "check_readable",
    "committed",
    "committed_samples",
    "file_variables",
    "leftover_temps",
    "plan_destination",
    "writing_note",
]

NO_LOCKING = "HDF5_USE_FILE_LOCKING"
TEMP = re.compile(r"^\.(?P<name>.+)\.(?:tmp|new)-(?P<pid>\d+)$")


def check_not_input(out: str, inputs: Mapping[str, str | None]) -> None:
    """Refuse an ``--out`` that is (after resolving links) one of the run's input files."""
    target = Path(out).resolve()
    for option, path in inputs.items():
        if path is None or not Path(path).exists():
            continue
        same = Path(path).resolve() == target
        if not same and target.exists():
            same = os.path.samefile(path, target)
        if same:
            raise CLIError(f"--out: {out} is the {option} file {path}; writing there would "
                           "replace it: pick another --out")  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_temps(out: Path) -> list[tuple[Path, int, bool]]:
    """The temporary files of runs writing ``out``: ``(path, pid, pid alive)``, newest first."""
    found = []
    for p in out.parent.glob(f".{out.name}.*-*"):
        m = TEMP.match(p.name)
        if m and m["name"] == out.name and p.is_file():
            pid = int(m["pid"])
            found.append((p, pid, pid != os.getpid() and _alive(pid)))
    return sorted(found, key=lambda t: t[0].stat().st_mtime, reverse=True)


def committed(path: Path) -> tuple[int, bool] | None:
    """``(committed samples, complete)`` of a stream file, or None if it cannot be read as one."""
    import xarray as xr

    from .io.ncfile import COMPLETE, SAMPLES

    # A writer holds HDF5's file lock: read its synced attributes without taking the lock.
    before = os.environ.get(NO_LOCKING)
    os.environ[NO_LOCKING] = "FALSE"
    try:  # through xarray, which shares its cached handle of a file the caller has open
        with xr.open_dataset(path, decode_cf=False, engine="netcdf4", cache=False) as ds:
            return int(ds.attrs[SAMPLES]), bool(ds.attrs[COMPLETE])
    except (OSError, KeyError, ValueError, RuntimeError):
        return None
    finally:
        if before is None:
            os.environ.pop(NO_LOCKING, None)
        else:
            os.environ[NO_LOCKING] = before


def committed_samples(path: Path) -> int | None:
    """Samples committed in ``path`` so far: from its live writer's lock (HDF5 keeps a file
    being written shut to readers), else from the file; None when neither says."""
    from .io.lock import lock_holder

    holder = lock_holder(path)
    if holder is not None:
        return holder["committed"] if isinstance(holder.get("committed"), int) else None
    state = committed(path)
    return None if state is None else state[0]


def _count(path: Path) -> str:
    n = committed_samples(path)
    return "committed samples unknown" if n is None else f"{n} samples committed"


def check_readable(path: str, say: Callable[[str], None]) -> None:
    """Raise :class:`CLIError` when ``path`` is being written (or not there yet but a stopped
    run's temporary is); say so when it is an unfinished file (its committed samples are read)."""
    note = writing_note(path)
    if note is not None and note.startswith("note: "):
        say(note.removeprefix("note: "))
    elif note is not None:
        raise CLIError(f"FILE: {note}")


def writing_note(path: str) -> str | None:
    """What a reader of ``path`` must know when a run is writing it, or left it unfinished
    (then starting with ``note:``: the file can be read)."""
    from .io.lock import describe, lock_holder

    p = Path(path)
    if p.is_dir():
        return None
    holder = lock_holder(p)
    temps = leftover_temps(p)
    live = [t for t in temps if t[2]]
    if holder is not None or live:
        where = live[0][0] if live else p
        who = describe(holder) if holder is not None else f"pid {live[0][1]}"
        return (f"{path} is being written by {who}: {_count(where)} so far; wait for the run "
                "to finish (the file is complete then)")
    if p.exists():
        state = committed(p)
        if state is not None and not state[1]:
            return (f"note: {path} is unfinished ({state[0]} samples committed by a run that "
                    "stopped; reading those); finish it with the same `seqacts extract ... "
                    "--resume` command")
        return None
    if temps:
        return (f"no file {path} yet, but a stopped run left {temps[0][0].name} ({_count(temps[0][0])}"
                "); finish it with the same `seqacts extract ... --resume` command")
    return None


class Plan:
    """Where a run writes: ``target`` (``out`` or a temporary beside it), whether it resumes
    ``target``, and whether ``target`` replaces ``out`` at the end."""

    def __init__(self, out: Path, target: Path, resume: bool) -> None:
        self.out, self.target, self.resume = out, target, resume

    @property
    def replaces(self) -> bool:
        return self.target != self.out

    def finish(self) -> None:
        """Put a finished temporary in place of ``out``."""
        if self.replaces:
            os.replace(self.target, self.out)

    def resume_hint(self) -> str:
        if not self.target.exists():
            return "no batch was committed, nothing was written"
        kept = f" in {self.target}" + (f" (the old {self.out} is kept until it completes)"
                                      if self.out.exists() and self.replaces else "")
        return f"{_count(self.target)}{kept}; rerun the same command with --resume to finish it"


def plan_destination(out: Path, overwrite: bool, resume: bool,
                     say: Callable[[str], None]) -> Plan:
    """Decide where the run writes, deal with the temporaries of dead runs, and refuse an
    existing ``out`` unless ``--overwrite`` or ``--resume`` says what to do with it."""
    from .io.lock import describe, lock_holder, lock_path

    if overwrite and resume:
        raise CLIError("--overwrite and --resume contradict each other: --resume finishes an "
                       "interrupted run, --overwrite starts over; pick one")  # fmt: skip
    holder = lock_holder(out)
    temps = leftover_temps(out)
    live = [t for t in temps if t[2]]
    if holder is not None or live:
        who = describe(holder) if holder is not None else f"pid {live[0][1]}"
        raise CLIError(f"--out: {out} is being written by {who}; wait for it to finish, or "
                       "pick another --out")  # fmt: skip
    mine = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    dead = [t[0] for t in temps]
    for p in dead:  # the writer lock a killed run left on its temporary
        lock_path(p).unlink(missing_ok=True)
    if resume and dead and committed(dead[0]) is not None:
        os.replace(dead[0], mine)
        say(f"resuming {dead[0].name}, left by a run that stopped ({_count(mine)})")
        dead = dead[1:]
        plan = Plan(out, mine, True)
    elif resume:
        plan = Plan(out, out, out.exists())
    elif out.exists() and not overwrite:
        state = committed(out)
        if state is not None and not state[1]:
            raise CLIError(f"--out: {out} holds an unfinished recording ({state[0]} samples "
                           "committed); pass --resume to finish it, or --overwrite to start over")
        left = (f"; a stopped run left {dead[0].name} ({_count(dead[0])}): --resume finishes "
                "it" if dead else "")
        raise CLIError(f"--out: {out} exists; pass --overwrite to replace it{left}")
    else:
        plan = Plan(out, mine if out.exists() else out, False)
    for p in dead:
        note = _count(p)
        p.unlink(missing_ok=True)
        say(f"removed {p.name}, left by a run that stopped ({note}); pass --resume to finish "
            "such a file instead")  # fmt: skip
    return plan


def attach_variables(path: Path, variables: Mapping[str, tuple[tuple[str, ...], Any]]) -> list[str]:
    """Write per-sample variables of the input (``dims``, values) into the finished file at
    ``path``; dims other than ``sample`` and ``time`` are created (``feature``). Variables the
    file holds already (a resumed run) are left as they are. Returns the names written."""
    import netCDF4
    import numpy as np
    import xarray as xr

    written = []
    with netCDF4.Dataset(path, "a") as nc:
        for name, (dims, values) in variables.items():
            if name in nc.variables:
                continue
            values = np.asarray(values)
            for dim, size in zip(dims, values.shape, strict=True):
                if dim not in nc.dimensions:
                    nc.createDimension(dim, size)
                elif len(nc.dimensions[dim]) != size:
                    raise CLIError(f"--input: {name!r} has {size} values along {dim} but the "
                                   f"recording has {len(nc.dimensions[dim])}; pass --drop {name}")
            encoded = xr.conventions.encode_cf_variable(xr.Variable(dims, values), name=name)
            row = max(1, int(np.prod(values.shape[1:])) * encoded.dtype.itemsize)
            chunks = (max(1, min(values.shape[0], 2**21 // row)), *values.shape[1:])
            var = nc.createVariable(name, encoded.dtype, dims, fletcher32=True, chunksizes=chunks)
            var.setncatts({k: v for k, v in encoded.attrs.items() if v is not None})
            var.setncattr("long_name", f"{name} of the input file, per sample")
            var[:] = encoded.values
            written.append(name)
    return written


def file_variables(path: Path) -> set[str]:
    """The names of the variables in the netCDF file at ``path``."""
    import netCDF4

    from .io.ncfile import LOCK

    with LOCK, netCDF4.Dataset(path) as nc:
        return set(nc.variables)
