"""The options of a recording and of its storage, as one frozen object.

:func:`seqacts.record`, :func:`seqacts.extract`, :func:`seqacts.extract_to_netcdf` and
:func:`seqacts.extract_distributed` take these options as keyword arguments and pass one
:class:`Options` on, so each option is declared, normalised and validated here once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ArgumentTypeError, OptionError
from .schema import COMPRESSION_NAMES, PACK_NAMES

__all__ = ["Options"]


def _names(value: str | Iterable[str] | None, option: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ArgumentTypeError(f"{option}: expected names as strings, got {bad[0]!r}")
    return names


@dataclass(frozen=True, kw_only=True)
class Options:
    """What to record and how to store it.

    Names given as one string or any iterable are kept as tuples; ``edits`` as a tuple.

    Parameters
    ----------
    layers : str or list of str, optional
        Layer labels, module paths or fnmatch patterns; default every recurrent layer.
    internals : bool or list of str, default False
        ``True`` adds every cell state and gate per step; a list picks variables.
    time : sequence, optional
        Labels for the ``time`` coordinate.
    modules : str or list of str, optional
        Paths or patterns of other modules whose outputs to record as well.
    cells : dict, optional
        Python cells to record from the state they return: module path or pattern ->
        ``"h"`` or ``"h,c"`` (see :func:`seqacts.record`).
    edits : list of edits, optional
        Interventions (:func:`seqacts.ablate`, :func:`seqacts.patch`) applied while recording.
    inputs : callable, optional
        Streaming only: maps one batch to the model's arguments.
    compression : {None, "zlib", "zstd"}
        Storage only: lossless compression of every variable.
    pack : {None, "int16"}
        Storage only: bounded variables as scaled int16.
    checksums : bool, default True
        Storage only: an HDF5 fletcher32 checksum on every chunk.
    """

    layers: str | Iterable[str] | None = None
    internals: bool | str | Collection[str] = False
    time: Sequence[Any] | None = field(default=None, compare=False)
    modules: str | Iterable[str] | None = None
    cells: Mapping[str, str] | None = field(default=None, hash=False)
    edits: Any = field(default=(), compare=False)
    inputs: Callable[[Any], Any] | None = field(default=None, compare=False)
    compression: str | None = None
    pack: str | None = None
    checksums: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "layers", _names(self.layers, "layers"))
        set_(self, "modules", _names(self.modules, "modules"))
        if self.cells is not None and not isinstance(self.cells, Mapping):
            raise ArgumentTypeError(
                f"cells: expected a dict of module path -> state (\"h\" or \"h,c\"), got "
                f"{type(self.cells).__name__}; e.g. cells={{\"decoder.cell\": \"h,c\"}}")
        set_(self, "cells", dict(self.cells) if self.cells else None)
        if not isinstance(self.internals, bool):
            names = _names(self.internals, "internals")
            set_(self, "internals", names if names else False)
        edits = self.edits
        set_(self, "edits", () if edits is None else (
            (edits,) if not isinstance(edits, (list, tuple)) else tuple(edits)))
        if self.compression not in (None, *COMPRESSION_NAMES):
            raise OptionError(
                f"compression: expected None or one of {', '.join(map(repr, COMPRESSION_NAMES))}, "
                f"got {self.compression!r}"
            )
        if self.pack not in (None, *PACK_NAMES):
            raise OptionError(
                f"pack: expected None or one of {', '.join(map(repr, PACK_NAMES))}, got {self.pack!r}"
            )
        if self.inputs is not None and not callable(self.inputs):
            raise ArgumentTypeError(f"inputs: expected a callable mapping a batch to the model's "
                              f"arguments, got {type(self.inputs).__name__}")
        set_(self, "checksums", bool(self.checksums))

    @classmethod
    def of(cls, where: str, options: dict[str, Any]) -> Options:
        """Options from keyword arguments, naming ``where`` and the valid names on a typo."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ArgumentTypeError(
                f"{where}: unknown option {', '.join(map(repr, unknown))}; options are "
                f"{', '.join(sorted(known))}"
            )
        return cls(**options)
