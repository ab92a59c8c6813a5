"""Exceptions raised by seqacts; each inherits from a builtin so plain ``except`` clauses work.

Every mistake a user can fix raises a :class:`SeqactsError` whose message names the problem and
the fix; the command line prints it on one line and exits with status 2. This module imports
nothing heavy, so the command line can check its arguments before loading torch.
"""

from __future__ import annotations

__all__ = [
    "SeqactsError",
    "ArgumentTypeError",
    "CLIError",
    "DatasetMismatchError",
    "DatasetNotFoundError",
    "GroupError",
    "InputError",
    "LayerSelectionError",
    "MissingVariableError",
    "NoRecurrentModuleError",
    "OptionError",
    "OutputExistsError",
    "RecordingError",
    "StreamMismatchError",
    "UnrollError",
    "UserCodeError",
    "IncompleteStreamWarning",
    "TrainingModeWarning",
]


class SeqactsError(Exception):
    """Base class of every error seqacts raises on purpose."""


class ArgumentTypeError(SeqactsError, TypeError):
    """An argument of the wrong type (a model that is no ``nn.Module``, names that are no str)."""


class CLIError(SeqactsError, ValueError):
    """A problem with the command line's arguments or files, with the fix in its message."""


class DatasetMismatchError(SeqactsError, ValueError):
    """Two datasets that should come from the same model do not (other layers or widths)."""


class DatasetNotFoundError(SeqactsError, FileNotFoundError):
    """No dataset at the path given: no such file, or a directory without ``part-*.nc`` shards."""


class GroupError(SeqactsError, ValueError):
    """Labels along ``sample`` (``group=``, ``reference=``, ``baseline=``) that cannot be used."""


class InputError(SeqactsError, ValueError):
    """Inputs or batches that do not fit: none at all, or labels of the wrong length."""


class LayerSelectionError(SeqactsError, ValueError):
    """A ``layers=`` or ``modules=`` name matched nothing in the model."""


class MissingVariableError(SeqactsError, ValueError):
    """An analysis needs a variable (e.g. gates from ``internals=True``) the dataset lacks."""


class NoRecurrentModuleError(SeqactsError, ValueError):
    """The model holds no ``nn.RNN/LSTM/GRU`` or recurrent cell."""


class OptionError(SeqactsError, ValueError):
    """An option's value is out of range, or does not fit the model or what was recorded."""


class OutputExistsError(SeqactsError, FileExistsError):
    """The destination exists and replacing it was not asked for."""


class RecordingError(SeqactsError, RuntimeError):
    """The recording could not be turned into a dataset (e.g. nothing was recorded)."""


class StreamMismatchError(SeqactsError, ValueError):
    """``resume=True`` met a file written with other layers, options or model weights."""


class UnrollError(SeqactsError, ValueError):
    """``layer_internals`` got an unknown kind or variable, or tensors of mismatched shapes."""


class UserCodeError(SeqactsError, RuntimeError):
    """The user's own code (a model factory, a module import, a forward) raised.

    The message says where it came from, e.g. ``MODEL: build() raised RuntimeError: ...``; the
    original exception is the ``__cause__``.
    """


class IncompleteStreamWarning(UserWarning):
    """The opened file was not finished (an interrupted stream); it holds committed batches."""


class TrainingModeWarning(UserWarning):
    """The model is in training mode with dropout: two recordings of one input differ."""
