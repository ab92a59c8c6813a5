"""Where each sample came from: the ``model(...)`` call (group) and the labels it was run under.

Every sample carries ``model_call``, the group it was recorded in (counted from 0 per
recording). :meth:`seqacts.Recorder.label` sets labels (``phase="train", epoch=3``) for the
groups recorded from then on; each becomes a coordinate along ``sample``, so samples of a
training loop's sanity check, training and validation steps stay apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

import numpy as np

from ..errors import ArgumentTypeError, OptionError
from ..schema import MODEL_CALL, SCHEMA_NAMES, VARIABLE_DOCS

__all__ = ["MODEL_CALL", "Restore", "check_labels", "label_coords"]

T = TypeVar("T")

#: Names a label may not take: the dataset's dims, coordinates and variables.
RESERVED: frozenset[str] = frozenset({*SCHEMA_NAMES, *VARIABLE_DOCS})


def check_labels(labels: Mapping[str, Any]) -> dict[str, Any]:
    """``labels`` validated: identifier names outside :data:`RESERVED`, scalar values.

    Raises
    ------
    OptionError
        For a name that is a dataset's dim, coordinate or variable.
    ArgumentTypeError
        For a value that is not a str, bool, int or float.
    """
    out = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise OptionError(f"label: {name!r} is not a name; use identifiers such as "
                              "phase='train', epoch=3")
        if name in RESERVED:
            raise OptionError(f"label: {name!r} is a name of the dataset's schema; choose "
                              f"another (e.g. {name}_label)")
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, (str, bool, int, float)):
            raise ArgumentTypeError(
                f"label: {name}={value!r}: expected a str, bool, int or float (one value per "
                "model(...) call), got " + type(value).__name__)
        out[name] = value
    return out


def label_coords(labels: Sequence[Mapping[str, Any]], sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """One array along ``sample`` per label name: each group's value repeated over its
    ``sizes`` samples; groups recorded without the label get "" (str), -1 (int) or NaN.

    Raises
    ------
    OptionError
        When one name was given values of different types (``epoch=1`` then ``epoch="2"``).
    """
    names = list(dict.fromkeys(k for group in labels for k in group))
    out = {}
    for name in names:
        given = [group[name] for group in labels if name in group]
        kinds = {type(v) for v in given}
        if kinds <= {int} or kinds <= {bool}:
            fill: Any = -1 if kinds <= {int} else False
        elif kinds <= {int, float}:
            fill = np.nan
        elif kinds <= {str}:
            fill = ""
        else:
            raise OptionError(
                f"label: {name!r} got values of types {', '.join(sorted(k.__name__ for k in kinds))}; "
                "give one label one type across the recording")
        values = [group.get(name, fill) for group in labels]
        out[name] = np.repeat(np.asarray(values), np.asarray(sizes, dtype=np.int64))
    return out


class Restore(AbstractContextManager[T], Generic[T]):
    """A context manager whose entry returns ``value`` and whose exit calls ``restore``: what
    :meth:`seqacts.Recorder.label` returns, to put the labels before back."""

    def __init__(self, value: T, restore: Callable[[], None]) -> None:
        self._value, self._restore = value, restore

    def __enter__(self) -> T:
        return self._value

    def __exit__(self, *exc: object) -> None:
        self._restore()
