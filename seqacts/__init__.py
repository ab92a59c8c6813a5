"""seqacts: look inside recurrent sequence models.

Record every layer of ``nn.RNN/LSTM/GRU`` stacks and recurrent cell loops, per timestep, into a
labeled ``xarray.Dataset``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import accessor as _accessor  # registers the ds.seqacts accessor
from .capture import Recorder, record
from .discover import layers
from .errors import (
    CorruptFileError,
    DestinationError,
    LayerSelectionError,
    NoRecurrentModuleError,
    OptionError,
    RecordingError,
    SeqactsError,
    StreamBusyError,
    StreamWriteError,
)
from .extract import extract
from .integrity import VerifyReport, verify
from .report import report
from .scale import extract_distributed, open_dataset
from .specs import GATES, KINDS
from .stream import IncompleteStreamWarning, StreamMismatchError, extract_to_netcdf
from .write import write_stream

try:
    __version__ = version("seqacts")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "CorruptFileError",
    "DestinationError",
    "GATES",
    "IncompleteStreamWarning",
    "KINDS",
    "LayerSelectionError",
    "NoRecurrentModuleError",
    "OptionError",
    "Recorder",
    "RecordingError",
    "SeqactsError",
    "StreamBusyError",
    "StreamMismatchError",
    "StreamWriteError",
    "VerifyReport",
    "__version__",
    "extract",
    "extract_distributed",
    "extract_to_netcdf",
    "layers",
    "open_dataset",
    "record",
    "report",
    "verify",
    "write_stream",
]

del _accessor
