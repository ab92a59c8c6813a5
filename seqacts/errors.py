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
    "CorruptFileError",
    "DatasetMismatchError",
    "DatasetNotFoundError",
    "DestinationError",
    "EditError",
    "GroupError",
    "InputError",
    "LayerSelectionError",
    "MissingDependencyError",
    "MissingVariableError",
    "NoRecurrentModuleError",
    "OptionError",
    "OutputExistsError",
    "RecordingError",
    "ReferenceMaskError",
    "ReferenceSetError",
    "StreamBusyError",
    "StreamMismatchError",
    "StreamWriteError",
    "UnreadableFileError",
    "UnrollError",
    "UnsupportedModelError",
    "UserCodeError",
    "IncompleteStreamWarning",
    "RecordingWarning",
    "ReferenceWarning",
    "TrainingModeWarning",
    "WorkspaceWarning",
    "KindError",
    "CellStateError",
]


class SeqactsError(Exception):
    """Base class of every error seqacts raises on purpose."""


class ArgumentTypeError(SeqactsError, TypeError):
    """An argument of the wrong type (a model that is no ``nn.Module``, names that are no str)."""


class CLIError(SeqactsError, ValueError):
    """A problem with the command line's arguments or files, with the fix in its message."""


class CorruptFileError(SeqactsError, OSError):
    """A file is truncated, has a broken header, or a chunk fails its checksum."""


class DatasetMismatchError(SeqactsError, ValueError):
    """Two datasets that should come from the same model do not (other layers or widths)."""


class DatasetNotFoundError(SeqactsError, FileNotFoundError):
    """No dataset at the path given: no such file, or a directory without ``part-*.nc`` shards."""


class DestinationError(SeqactsError, OSError):
    """The output path cannot be written: its directory is missing, it is a directory, or the
    directory is not writable. Raised before any batch is run."""


class EditError(SeqactsError, ValueError):
    """An edit does not fit the model or the run (state, units, direction, time, source)."""


class GroupError(SeqactsError, ValueError):
    """Labels along ``sample`` (``group=``, ``reference=``, ``baseline=``) that cannot be used."""


class InputError(SeqactsError, ValueError):
    """Inputs or batches that do not fit: none at all, or labels of the wrong length."""


class LayerSelectionError(SeqactsError, ValueError):
    """A ``layers=`` or ``modules=`` name matched nothing in the model."""


class MissingDependencyError(SeqactsError, ImportError):
    """An optional dependency a feature needs is not installed (the message names the extra)."""


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


class ReferenceMaskError(SeqactsError, TypeError):
    """``reference=`` is neither a Dataset nor a boolean mask along sample."""


class ReferenceSetError(SeqactsError, ValueError):
    """A reference for an anomaly score that is empty, too small or from another model."""


class StreamBusyError(SeqactsError, BlockingIOError):
    """Another process (named in the message) is writing this stream file right now."""


class StreamMismatchError(SeqactsError, ValueError):
    """``resume=True`` met a file written with other layers, options or model weights."""


class StreamWriteError(SeqactsError, OSError):
    """Writing a batch failed (``errno`` says why: ``ENOSPC``, ``EFBIG``...); the file keeps every
    batch committed before it, and ``resume=True`` finishes it once the cause is fixed."""


class UnreadableFileError(SeqactsError, OSError):
    """A file cannot be opened although its header is whole (e.g. another program holds it)."""


class UnrollError(SeqactsError, ValueError):
    """``layer_internals`` got an unknown kind or variable, or tensors of mismatched shapes."""


class UnsupportedModelError(SeqactsError, TypeError):
    """The model runs through TorchScript or ``torch.compile``, whose kernels cannot be recorded."""


class UserCodeError(SeqactsError, RuntimeError):
    """The user's own code (a model factory, a module import, a forward) raised.

    The message says where it came from, e.g. ``MODEL: build() raised RuntimeError: ...``; the
    original exception is the ``__cause__``.
    """


class KindError(SeqactsError, ValueError):
    """A recurrent kind unknown to the registry, or registered twice with different facts."""


class CellStateError(SeqactsError, TypeError):
    """A Python cell (``cells=``) received or returned something that is not the declared state.

    The message names the module, what it returned, and the state that was declared.
    """


class WorkspaceLayoutError(SeqactsError, RuntimeError):
    """Internal: an LSTM kernel's workspace is not laid out as seqacts reads it. Never reaches
    the user: seqacts recomputes the gates instead (with a :class:`WorkspaceWarning`)."""


class IncompleteStreamWarning(UserWarning):
    """The opened file was not finished (an interrupted stream); it holds committed batches."""


class RecordingWarning(UserWarning):
    """The dataset was built, but something about the recording needs the user's attention.

    Layers whose rows could not be aligned as the same samples, non-finite states, a selected
    layer that saw no call, or a failure of seqacts' own bookkeeping during a forward.
    """


class ReferenceWarning(UserWarning):
    """The reference mask is an anomaly label itself (``is_anomaly``), not its complement."""


class TrainingModeWarning(UserWarning):
    """The model is in training mode with dropout: two recordings of one input differ."""


class WorkspaceWarning(RuntimeWarning):
    """LSTM gates could not be read from the kernel's workspace; they are recomputed instead."""
