"""seqacts: look inside recurrent sequence models.

Record every layer of ``nn.RNN/LSTM/GRU`` stacks and recurrent cell loops, per timestep, into a
labeled ``xarray.Dataset``; edit their states inside the recurrence (``ablate``, ``patch``,
``intervene``, ``ablation_scan``).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import accessor as _accessor  # registers the ds.seqacts accessor
from .analysis.step_distance import step_distance
from .capture.discovery import layers
from .capture.recorder import Recorder, record
from .errors import (
    CorruptFileError,
    DestinationError,
    EditError,
    LayerSelectionError,
    NoRecurrentModuleError,
    OptionError,
    RecordingError,
    RecordingWarning,
    SeqactsError,
    StreamBusyError,
    StreamWriteError,
    UnsupportedModelError,
)
from .interventions import Edit, Intervention, ablate, ablation_scan, extract, intervene, patch
from .io.integrity import VerifyReport, verify
from .io.scale import extract_distributed, open_dataset
from .io.stream import IncompleteStreamWarning, StreamMismatchError, extract_to_netcdf
from .io.write import write_stream
from .schema import INTERNALS, KINDS
from .viz.report import report

try:
    __version__ = version("seqacts")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "CorruptFileError",
    "DestinationError",
    "Edit",
    "EditError",
    "GATES",
    "INTERNALS",
    "IncompleteStreamWarning",
    "Intervention",
    "KINDS",
    "LayerSelectionError",
    "NoRecurrentModuleError",
    "OptionError",
    "Recorder",
    "RecordingError",
    "RecordingWarning",
    "SeqactsError",
    "StreamBusyError",
    "StreamMismatchError",
    "StreamWriteError",
    "UnsupportedModelError",
    "VerifyReport",
    "__version__",
    "ablate",
    "ablation_scan",
    "extract",
    "extract_distributed",
    "extract_to_netcdf",
    "intervene",
    "layers",
    "open_dataset",
    "patch",
    "record",
    "report",
    "step_distance",
    "verify",
    "write_stream",
]

#: The former name of :data:`INTERNALS`, kept so existing code keeps working.
GATES = INTERNALS

del _accessor
