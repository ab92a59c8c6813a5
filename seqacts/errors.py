"""Exceptions raised by seqacts; each inherits from a builtin so plain ``except`` clauses work."""

from __future__ import annotations

__all__ = [
    "SeqactsError",
    "LayerSelectionError",
    "NoRecurrentModuleError",
    "OptionError",
    "RecordingError",
    "EditError",
    "StreamMismatchError",
    "IncompleteStreamWarning",
]


class SeqactsError(Exception):
    """Base class of every error seqacts raises on purpose."""


class LayerSelectionError(SeqactsError, ValueError):
    """A ``layers=`` or ``modules=`` name matched nothing in the model."""


class NoRecurrentModuleError(SeqactsError, ValueError):
    """The model holds no ``nn.RNN/LSTM/GRU`` or recurrent cell."""


class RecordingError(SeqactsError, RuntimeError):
    """The recording could not be turned into a dataset (e.g. nothing was recorded)."""


class OptionError(SeqactsError, ValueError):
    """An option does not fit the model or what was recorded (``internals=``, ``time=``)."""


class EditError(SeqactsError, ValueError):
    """An edit does not fit the model or the run (state, units, direction, time, source)."""


class StreamMismatchError(SeqactsError, ValueError):
    """``resume=True`` met a file written with other layers, options or model weights."""


class IncompleteStreamWarning(UserWarning):
    """The opened file was not finished (an interrupted stream); it holds committed batches."""
