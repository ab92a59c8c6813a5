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
    LayerSelectionError,
    NoRecurrentModuleError,
    OptionError,
    RecordingError,
    SeqactsError,
)
from .extract import extract
from .report import report
from .scale import extract_distributed, open_dataset
from .specs import GATES, KINDS
from .step_distance import step_distance
from .stream import IncompleteStreamWarning, StreamMismatchError, extract_to_netcdf

try:
    __version__ = version("seqacts")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "GATES",
    "IncompleteStreamWarning",
    "KINDS",
    "LayerSelectionError",
    "NoRecurrentModuleError",
    "OptionError",
    "Recorder",
    "RecordingError",
    "SeqactsError",
    "StreamMismatchError",
    "__version__",
    "extract",
    "extract_distributed",
    "extract_to_netcdf",
    "layers",
    "open_dataset",
    "record",
    "report",
    "step_distance",
]

del _accessor
