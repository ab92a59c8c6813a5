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
    "StreamBusyError",
    "StreamWriteError",
    "CorruptFileError",
    "DestinationError",
    "GroupError",
    "ReferenceSetError",
    "ReferenceMaskError",
    "IncompleteStreamWarning",
    "RecordingWarning",
    "UnsupportedModelError",
    "WorkspaceWarning",
]


class SeqactsError(Exception):
    """Base class of every error seqacts raises on purpose."""


class LayerSelectionError(SeqactsError, ValueError):
    """A ``layers=`` or ``modules=`` name matched nothing in the model."""


class NoRecurrentModuleError(SeqactsError, ValueError):
    """The model holds no ``nn.RNN/LSTM/GRU`` or recurrent cell."""


class UnsupportedModelError(SeqactsError, TypeError):
    """The model runs through TorchScript or ``torch.compile``, whose kernels cannot be recorded."""


class RecordingError(SeqactsError, RuntimeError):
    """The recording could not be turned into a dataset (e.g. nothing was recorded)."""


class OptionError(SeqactsError, ValueError):
    """An option does not fit the model or what was recorded (``internals=``, ``time=``)."""


class EditError(SeqactsError, ValueError):
    """An edit does not fit the model or the run (state, units, direction, time, source)."""


class StreamMismatchError(SeqactsError, ValueError):
    """``resume=True`` met a file written with other layers, options or model weights."""


class StreamBusyError(SeqactsError, BlockingIOError):
    """Another process (named in the message) is writing this stream file right now."""


class StreamWriteError(SeqactsError, OSError):
    """Writing a batch failed (``errno`` says why: ``ENOSPC``, ``EFBIG``...); the file keeps every
    batch committed before it, and ``resume=True`` finishes it once the cause is fixed."""


class CorruptFileError(SeqactsError, OSError):
    """A file is truncated, has a broken header, or a chunk fails its checksum."""


class DestinationError(SeqactsError, OSError):
    """The output path cannot be written: its directory is missing, it is a directory, or the
    directory is not writable. Raised before any batch is run."""
class GroupError(SeqactsError, ValueError):
    """Group labels, a baseline, kinds or a ``where=`` mask that do not fit the dataset."""


class ReferenceSetError(SeqactsError, ValueError):
    """A reference for an anomaly score that is empty, too small or from another model."""


class ReferenceMaskError(SeqactsError, TypeError):
    """``reference=`` is neither a Dataset nor a boolean mask along sample."""


class IncompleteStreamWarning(UserWarning):
    """The opened file was not finished (an interrupted stream); it holds committed batches."""


class RecordingWarning(UserWarning):
    """The dataset was built, but something about the recording needs the user's attention.

    Layers whose rows could not be aligned as the same samples, non-finite states, a selected
    layer that saw no call, or a failure of seqacts' own bookkeeping during a forward.
    """


class WorkspaceWarning(RuntimeWarning):
    """LSTM gates could not be read from the kernel's workspace; they are recomputed instead."""
