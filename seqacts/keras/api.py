"""``record``, ``extract`` and ``layers`` for Keras models (the public functions dispatch here)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import xarray as xr

from ..errors import UnsupportedModelError
from ..options import Options
from .discovery import keras_layers
from .recorder import KerasRecorder

__all__ = ["extract", "interventions_unsupported", "layers", "record"]


def layers(model: Any) -> list[str]:
    """The recordable layer labels of a Keras model: Keras paths (``"encoder/lstm_1"``)."""
    return keras_layers(model)


def record(model: Any, options: Options) -> KerasRecorder:
    """A recorder for a Keras model: ``with`` it, call ``model(x)``, then ``to_dataset()``."""
    return KerasRecorder(model, options)


def _grad_mode(grad: bool) -> AbstractContextManager[Any]:
    import keras

    if keras.backend.backend() == "torch":
        import torch

        return torch.set_grad_enabled(grad)
    return nullcontext()


def extract(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *,
            layers: str | Iterable[str] | None = None,
            internals: bool | Collection[str] = False, time: Sequence[Any] | None = None,
            modules: str | Iterable[str] | None = None, grad: bool = False) -> xr.Dataset:
    """Call ``model(*args, training=False, **kwargs)`` once under a recorder; its dataset."""
    rec = KerasRecorder(model, Options(layers=layers, internals=internals, time=time,
                                       modules=modules))
    kwargs = {"training": False, **kwargs}
    with _grad_mode(grad), rec:
        model(*args, **kwargs)
    return rec.to_dataset()


def interventions_unsupported(model: Any) -> UnsupportedModelError:
    """The error for an intervention on a Keras model."""
    return UnsupportedModelError(
        f"{type(model).__name__}: interventions (ablate, patch, intervene, ablation_scan, "
        "edits=) are PyTorch-only for now; seqacts.extract(model, x) records Keras models "
        "without edits")
