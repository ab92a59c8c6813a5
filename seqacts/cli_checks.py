"""Checks the command line runs before any work: destinations, and messages of the user's code.

A destination is checked before the model is built, so a mistake costs a second rather than
the whole computation: ``--out`` must not be a directory (for a file) or a file (for a
directory), must not exist unless replacing it was asked for, and its nearest existing parent
must be a writable directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .errors import CLIError, UserCodeError

__all__ = [
    "along_sample",
    "check_group",
    "check_out_dir",
    "check_out_file",
    "describe_values",
    "from_user_code",
    "one_line",
    "safe_message",
]

#: Sentences of library messages that must never reach a user as advice: loading pickles
#: without ``weights_only`` runs arbitrary code, and casting a model to an integer dtype is
#: never the fix for an input of the wrong dtype.
UNSAFE_ADVICE = re.compile(r"weights_only\s*=\s*False|\.to\(\s*torch\.(u?int|bool)|unpickl",
                           re.IGNORECASE)  # fmt: skip


def one_line(err: BaseException | str) -> str:
    """A message on one line (libraries' messages may span several)."""
    return " ".join(str(err).split())


def _writable_parent(path: Path, option: str) -> None:
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CLIError(f"{option}: {parent} is a file, so {path} cannot be created inside it; "
                       "pick another path")  # fmt: skip
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{option}: cannot write in {str(parent) + os.sep!r} (permission denied); "
                       "pick a directory you can write to")  # fmt: skip


def check_out_file(path: str, overwrite: bool, option: str = "--out") -> Path:
    """Check that ``path`` can be written as a new file (or replaced, with ``overwrite``)."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{option}: {path!r} is a directory; name a file, e.g. "
                       f"{str(p / 'acts.nc')!r}")  # fmt: skip
    if p.exists() and not overwrite:
        raise CLIError(f"{option}: {path} exists; pass --overwrite to replace it")
    if p.exists() and not os.access(p, os.W_OK):
        raise CLIError(f"{option}: {path} is read-only; pick another path")
    _writable_parent(p, option)
    return p


def check_out_dir(path: str, option: str = "--out") -> Path:
    """Check that ``path`` is, or can be created as, a writable directory."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"{option}: {path!r} is a file; name a directory to write into")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise CLIError(f"{option}: cannot write in {path!r} (permission denied); pick a "
                           "directory you can write to")  # fmt: skip
        return p
    _writable_parent(p / "x", option)
    return p


def safe_message(err: BaseException) -> str:
    """``err``'s message on one line, without sentences of unsafe advice (see UNSAFE_ADVICE)."""
    sentences = re.split(r"(?<=[.;!?])\s+", one_line(err))
    kept = " ".join(s for s in sentences if not UNSAFE_ADVICE.search(s)) or "(no message)"
    return kept if len(kept) <= 300 else kept[:297] + "..."


def from_user_code(where: str, err: BaseException) -> UserCodeError:
    """A :class:`UserCodeError` saying which of the user's code raised ``err``, in one line."""
    return UserCodeError(f"{where} raised {type(err).__name__}: {safe_message(err)}")


def along_sample(ds: Any) -> list[str]:
    """Names of the 1-D variables along ``sample``: what ``report --group`` accepts."""
    return [str(k) for k, v in ds.variables.items() if v.dims == ("sample",) and k != "sample"]


def describe_values(values: Any) -> str:
    """The kind of a label's values and, for a few distinct values, how often each occurs."""
    import numpy as np
    import pandas as pd

    values = np.asarray(values)
    kind = {"b": "bool", "i": "int", "u": "int", "f": "float", "M": "datetime", "m": "timedelta",
            "U": "str", "S": "str", "O": "str"}.get(values.dtype.kind, str(values.dtype))  # fmt: skip
    counts = pd.Series(values).value_counts(dropna=False, sort=False)
    if len(counts) <= 8 and kind != "float":
        return f"{kind}, {len(counts)} values: " + ", ".join(
            f"{k} ({n})" for k, n in counts.items()
        )
    return f"{kind}, {len(counts)} distinct values"


def check_group(ds: Any, group: str, path: str, option: str = "--group") -> None:
    """``option`` (``--group``, ``--kinds``) must name labels along ``sample`` alone."""
    labels = along_sample(ds)
    choices = (
        f"labels along sample: {', '.join(labels)}"
        if labels
        else "it has no labels along sample; attach them with `seqacts extract --coords FILE`"
    )
    if group not in ds.variables:
        raise CLIError(f"{option}: {path} has no variable {group!r}; {choices}")
    if ds[group].dims != ("sample",):
        raise CLIError(f"{option}: {group!r} has dims ({', '.join(map(str, ds[group].dims))}), "
                       f"not sample alone; {choices}")  # fmt: skip
    import pandas as pd

    counts = pd.Series(ds[group].values).value_counts()
    if len(counts) < 2:
        raise CLIError(
            f"{option}: {group!r} has a single value ({counts.index[0] if len(counts) else '-'}) "
            "across the samples; pick labels that split them into two or more groups"
        )
    if (counts < 2).any():
        raise CLIError(
            f"{option}: {group!r} has {len(counts)} distinct values, {int((counts < 2).sum())} of "
            "them on fewer than 2 samples; pick boolean or categorical labels"
        )
