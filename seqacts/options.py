"""The options of a recording and of its storage, each declared once as a frozen object.

:class:`RecordingOptions` says what a recording holds (:func:`seqacts.record`,
:func:`seqacts.extract`); :class:`StorageOptions` how a file stores it
(:func:`seqacts.write_stream`); :class:`Options` is both plus ``inputs``, what
:func:`seqacts.extract_to_netcdf` and :func:`seqacts.extract_distributed` take. Each function
shows these fields as its keywords (:func:`seqacts.signatures.keywords_from`) and passes the
object on, so each option is declared, normalised and validated here once, and an option a
function accepts is one its consumers read.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from .errors import ArgumentTypeError, OptionError
from .schema import COMPRESSION_NAMES, PACK_NAMES

__all__ = ["Keywords", "Options", "RecordingOptions", "StorageOptions", "option_names", "split_options"]

K = TypeVar("K", bound="Keywords")


def _names(value: str | Iterable[str] | None, option: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = (value,) if isinstance(value, str) else tuple(value)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise ArgumentTypeError(f"{option}: expected names as strings, got {bad[0]!r}")
    return names


def _choice(value: str | None, option: str, names: Sequence[str]) -> None:
    if value not in (None, *names):
        raise OptionError(
            f"{option}: expected None or one of {', '.join(map(repr, names))}, got {value!r}")


#: What ``chain=`` may declare about a layer's calls (``{"cell": "steps"}``).
CHAIN_MODES: tuple[str, ...] = ("steps",)


def _chain(value: str | Iterable[str] | Mapping[str, str] | None) -> tuple[str, ...] | None:
    """``chain=`` as layer names: a mapping's keys (each value a mode of CHAIN_MODES)."""
    if isinstance(value, Mapping):
        bad = {k: v for k, v in value.items() if v not in CHAIN_MODES}
        if bad:
            name, mode = next(iter(bad.items()))
            raise OptionError(
                f"chain: {name!r}: unknown mode {mode!r}; the mode is "
                f"{' or '.join(map(repr, CHAIN_MODES))} (the layer's calls within one model(...) "
                "call with the same batch size are consecutive steps of the same rows), e.g. "
                f"chain={{{name!r}: 'steps'}}"
            )
        value = list(value)
    names = _names(value, "chain")
    return names if names else None


class Keywords:
    """Building options from a function's keyword arguments."""

    @classmethod
    def of(cls: type[K], where: str, options: dict[str, Any]) -> K:
        """Options from keyword arguments, naming ``where`` and the valid names on a typo."""
        known = option_names(cls)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ArgumentTypeError(
                f"{where}: unknown option {', '.join(map(repr, unknown))}; options are "
                f"{', '.join(sorted(known))}"
            )
        return cls(**options)


@dataclass(frozen=True, kw_only=True)
class RecordingOptions(Keywords):
    """What to record: layers, internals, other modules, time labels, and edits applied.

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
    chain : str, list of str or dict, optional
        Layers (labels, module paths or patterns; a dict ``{"cell": "steps"}`` names them by
        its keys) whose calls within one ``model(...)`` call with the same batch size are
        consecutive steps of the same rows, whatever state they receive.
    edits : Edit or list of Edit, optional
        Interventions (:func:`seqacts.ablate`, :func:`seqacts.patch`) applied while recording:
        the recording holds the edited run.
    """

    layers: str | Iterable[str] | None = None
    internals: bool | str | Collection[str] = False
    time: Sequence[Any] | None = field(default=None, compare=False)
    modules: str | Iterable[str] | None = None
    cells: Mapping[str, str] | None = field(default=None, hash=False)
    chain: str | Iterable[str] | Mapping[str, str] | None = field(default=None, hash=False)
    edits: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "layers", _names(self.layers, "layers"))
        set_(self, "modules", _names(self.modules, "modules"))
        set_(self, "chain", _chain(self.chain))
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


@dataclass(frozen=True, kw_only=True)
class StorageOptions(Keywords):
    """How a file stores a recording.

    Parameters
    ----------
    compression : {None, "zlib", "zstd"}
        Lossless compression of every variable.
    pack : {None, "int16"}
        Bounded variables as scaled int16.
    checksums : bool, default True
        An HDF5 fletcher32 checksum on every chunk.
    """

    compression: str | None = None
    pack: str | None = None
    checksums: bool = True

    def __post_init__(self) -> None:
        _choice(self.compression, "compression", COMPRESSION_NAMES)
        _choice(self.pack, "pack", PACK_NAMES)
        object.__setattr__(self, "checksums", bool(self.checksums))


@dataclass(frozen=True, kw_only=True)
class Options(StorageOptions, RecordingOptions):
    """A streamed recording's options: :class:`RecordingOptions`, :class:`StorageOptions` and
    ``inputs``.

    Parameters
    ----------
    inputs : callable, optional
        Maps one batch to the model's arguments.
    """

    inputs: Callable[[Any], Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        RecordingOptions.__post_init__(self)
        StorageOptions.__post_init__(self)
        if self.inputs is not None and not callable(self.inputs):
            raise ArgumentTypeError(f"inputs: expected a callable mapping a batch to the model's "
                                    f"arguments, got {type(self.inputs).__name__}")


def option_names(cls: type) -> set[str]:
    """The keyword names an options class takes."""
    return {f.name for f in fields(cls)}


def split_options(cls: type[K], kwargs: dict[str, Any]) -> tuple[K, dict[str, Any]]:
    """``cls`` built from the keywords of ``kwargs`` it names, and the other keywords."""
    names = option_names(cls)
    mine = {k: v for k, v in kwargs.items() if k in names}
    return cls(**mine), {k: v for k, v in kwargs.items() if k not in names}
