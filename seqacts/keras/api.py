"""``record``, ``extract`` and ``layers`` for Keras models (the public functions dispatch here)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import xarray as xr

from ..errors import OptionError
from ..options import RecordingOptions
from .discovery import keras_layers
from .recorder import KerasRecorder, interventions_unsupported

__all__ = ["extract", "interventions_unsupported", "layers", "record"]


def layers(model: Any) -> list[str]:
    """The recordable layer labels of a Keras model: Keras paths (``"encoder/lstm_1"``)."""
    return keras_layers(model)


def record(model: Any, options: RecordingOptions, labels: Any = None) -> KerasRecorder:
    """A recorder for a Keras model: ``with`` it, call ``model(x)``, then ``to_dataset()``."""
    if labels:
        raise OptionError("record: labels= is not supported for Keras models yet; record each "
                          "phase in its own record() block and concatenate the datasets")
    return KerasRecorder(model, options)


def _grad_mode(grad: bool) -> AbstractContextManager[Any]:
    import keras

    if keras.backend.backend() == "torch":
        import torch

        return torch.set_grad_enabled(grad)
    return nullcontext()


def extract(model: Any, options: RecordingOptions, args: tuple[Any, ...],
            kwargs: dict[str, Any], *, grad: bool = False) -> xr.Dataset:
    """Call ``model(*args, training=False, **kwargs)`` once under a recorder; its dataset."""
    rec = KerasRecorder(model, options)
    kwargs = {"training": False, **kwargs}
    with _grad_mode(grad), rec:
        model(*args, **kwargs)
    return rec.to_dataset()
