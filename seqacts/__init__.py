"""seqacts: look inside recurrent sequence models.

Record every layer of ``nn.RNN/LSTM/GRU`` stacks and recurrent cell loops, per timestep, into a
labeled ``xarray.Dataset``.

The analyses and the ``ds.seqacts`` accessor load with the package; everything that needs
PyTorch (recording, streaming) or matplotlib (the report) is imported on first use, so the
command line answers ``--help`` and argument errors without loading them.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import accessor as _accessor  # registers the ds.seqacts accessor
from .analysis.compare import compare, distance, final_state, roc_auc
from .analysis.core import dead_units, masked, saturation, step_change
from .analysis.summary import summary, summary_table
from .errors import (
    ArgumentTypeError,
    DatasetMismatchError,
    DatasetNotFoundError,
    GroupError,
    IncompleteStreamWarning,
    InputError,
    LayerSelectionError,
    MissingVariableError,
    NoRecurrentModuleError,
    OptionError,
    OutputExistsError,
    RecordingError,
    SeqactsError,
    StreamMismatchError,
    TrainingModeWarning,
    UnrollError,
    UserCodeError,
)
from .schema import GATES, KINDS

if TYPE_CHECKING:
    from .capture.discovery import layers
    from .capture.extract import extract
    from .capture.recorder import Recorder, record
    from .io.scale import extract_distributed, open_dataset
    from .io.stream import extract_to_netcdf
    from .viz.report import report

try:
    __version__ = version("seqacts")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

#: Public names imported on first use: name -> module that defines it.
_LAZY: dict[str, str] = {
    "Recorder": "seqacts.capture.recorder",
    "extract": "seqacts.capture.extract",
    "extract_distributed": "seqacts.io.scale",
    "extract_to_netcdf": "seqacts.io.stream",
    "layers": "seqacts.capture.discovery",
    "open_dataset": "seqacts.io.scale",
    "record": "seqacts.capture.recorder",
    "report": "seqacts.viz.report",
}

__all__ = [
    "GATES",
    "KINDS",
    "ArgumentTypeError",
    "DatasetMismatchError",
    "DatasetNotFoundError",
    "GroupError",
    "IncompleteStreamWarning",
    "InputError",
    "LayerSelectionError",
    "MissingVariableError",
    "NoRecurrentModuleError",
    "OptionError",
    "OutputExistsError",
    "Recorder",
    "RecordingError",
    "SeqactsError",
    "StreamMismatchError",
    "TrainingModeWarning",
    "UnrollError",
    "UserCodeError",
    "__version__",
    "compare",
    "dead_units",
    "distance",
    "extract",
    "extract_distributed",
    "extract_to_netcdf",
    "final_state",
    "layers",
    "masked",
    "open_dataset",
    "record",
    "report",
    "roc_auc",
    "saturation",
    "step_change",
    "summary",
    "summary_table",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seqacts' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


del _accessor
