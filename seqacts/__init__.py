"""seqacts: look inside recurrent sequence models.

Record every layer of ``nn.RNN/LSTM/GRU`` stacks and recurrent cell loops, per timestep, into a
labeled ``xarray.Dataset``; edit their states inside the recurrence (``ablate``, ``patch``,
``intervene``, ``ablation_scan``).

The analyses and the ``ds.seqacts`` accessor load with the package; everything that needs
PyTorch (recording, interventions, streaming) or matplotlib (the report) is imported on first
use, so the command line answers ``--help`` and argument errors without loading them.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import accessor as _accessor  # registers the ds.seqacts accessor
from .analysis.compare import compare, distance, final_state, roc_auc
from .analysis.core import dead_units, masked, saturation, step_change
from .analysis.epochs import per_epoch
from .analysis.step_distance import step_distance
from .analysis.summary import summary, summary_table
from .analysis.windows import match, top_windows
from .errors import (
    ArgumentTypeError,
    CellStateError,
    CorruptFileError,
    DatasetMismatchError,
    DatasetNotFoundError,
    DestinationError,
    EditError,
    GroupError,
    IncompleteStreamWarning,
    InputError,
    KindError,
    LayerSelectionError,
    MissingDependencyError,
    MissingVariableError,
    NoRecurrentModuleError,
    OptionError,
    OutputExistsError,
    RecordingError,
    RecordingWarning,
    ReferenceMaskError,
    ReferenceSetError,
    ReferenceWarning,
    SeqactsError,
    StreamBusyError,
    StreamMismatchError,
    StreamWriteError,
    TrainingModeWarning,
    UnreadableFileError,
    UnrollError,
    UnsupportedModelError,
    UserCodeError,
    WorkspaceWarning,
)
from .schema import INTERNALS, KINDS

if TYPE_CHECKING:
    from .capture.discovery import layers
    from .capture.extract import extract, record
    from .capture.modules import register_cell
    from .capture.recorder import Recorder
    from .interventions.attribution import input_attribution
    from .interventions.context import Intervention, intervene
    from .interventions.edits import Edit, ablate, patch
    from .interventions.scan import ablation_scan
    from .io.distributed import extract_distributed
    from .io.integrity import VerifyReport, verify
    from .io.reading import open_dataset
    from .io.stream import extract_to_netcdf
    from .io.write import write_stream
    from .viewer.serve import view
    from .viz.report import report

try:
    __version__ = version("seqacts")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

#: The former name of :data:`INTERNALS`, kept so existing code keeps working.
GATES = INTERNALS

#: Public names imported on first use: name -> module that defines it.
_LAZY: dict[str, str] = {
    "Edit": "seqacts.interventions.edits",
    "Intervention": "seqacts.interventions.context",
    "Recorder": "seqacts.capture.recorder",
    "VerifyReport": "seqacts.io.integrity",
    "ablate": "seqacts.interventions.edits",
    "ablation_scan": "seqacts.interventions.scan",
    "extract": "seqacts.capture.extract",
    "extract_distributed": "seqacts.io.distributed",
    "extract_to_netcdf": "seqacts.io.stream",
    "input_attribution": "seqacts.interventions.attribution",
    "intervene": "seqacts.interventions.context",
    "layers": "seqacts.capture.discovery",
    "open_dataset": "seqacts.io.reading",
    "patch": "seqacts.interventions.edits",
    "record": "seqacts.capture.extract",
    "report": "seqacts.viz.report",
    "verify": "seqacts.io.integrity",
    "view": "seqacts.viewer.serve",
    "write_stream": "seqacts.io.write",
    "register_cell": "seqacts.capture.modules",
}

__all__ = [
    "GATES",
    "INTERNALS",
    "KINDS",
    "ArgumentTypeError",
    "CorruptFileError",
    "DatasetMismatchError",
    "DatasetNotFoundError",
    "DestinationError",
    "Edit",
    "EditError",
    "GroupError",
    "IncompleteStreamWarning",
    "InputError",
    "Intervention",
    "LayerSelectionError",
    "MissingDependencyError",
    "MissingVariableError",
    "NoRecurrentModuleError",
    "OptionError",
    "OutputExistsError",
    "Recorder",
    "RecordingError",
    "RecordingWarning",
    "ReferenceMaskError",
    "ReferenceSetError",
    "ReferenceWarning",
    "SeqactsError",
    "StreamBusyError",
    "StreamMismatchError",
    "StreamWriteError",
    "TrainingModeWarning",
    "UnreadableFileError",
    "UnrollError",
    "UnsupportedModelError",
    "UserCodeError",
    "VerifyReport",
    "WorkspaceWarning",
    "__version__",
    "ablate",
    "ablation_scan",
    "compare",
    "dead_units",
    "distance",
    "extract",
    "extract_distributed",
    "extract_to_netcdf",
    "final_state",
    "input_attribution",
    "intervene",
    "layers",
    "masked",
    "match",
    "open_dataset",
    "patch",
    "per_epoch",
    "record",
    "report",
    "roc_auc",
    "saturation",
    "step_change",
    "step_distance",
    "summary",
    "summary_table",
    "top_windows",
    "verify",
    "view",
    "write_stream",
    "CellStateError",
    "KindError",
    "register_cell",
]


#: Modules a lazily imported name needs loaded too: ``extract(gradients=)`` is served by
#: ``seqacts.interventions``, which registers itself with capture when imported.
_WITH: dict[str, str] = {"extract": "seqacts.interventions"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        if name in _WITH:
            importlib.import_module(_WITH[name])
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seqacts' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


del _accessor
