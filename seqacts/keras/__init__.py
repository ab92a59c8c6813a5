"""The Keras 3 front end: record Keras models' recurrent layers into seqacts' dataset.

Imported only when a model is a Keras model (``import seqacts`` never imports keras); the
public entry points are :func:`seqacts.record`, :func:`seqacts.extract` and
:func:`seqacts.layers`, which dispatch here (:mod:`seqacts.keras.api`).
"""

from __future__ import annotations

import sys

__all__ = ["is_keras_model"]


def is_keras_model(model: object) -> bool:
    """Whether ``model`` is a Keras 3 layer or model, without importing keras.

    A Keras model on the torch backend is also a ``torch.nn.Module``: ask this first.
    """
    keras = sys.modules.get("keras")
    layer = getattr(keras, "Layer", None) if keras is not None else None
    return isinstance(layer, type) and isinstance(model, layer)
