"""Loading a saved Keras 3 model (``.keras``) without running code from the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CLIError

__all__ = ["load_keras_model"]


def load_keras_model(path: Path) -> Any:
    """``keras.saving.load_model(path, safe_mode=True)``, its refusals as one-line errors.

    ``safe_mode`` refuses a ``Lambda`` layer's Python code (it would run on loading): the
    error says so and what to do, and nothing from the file is executed.
    """
    try:
        import keras
    except ImportError as err:
        raise CLIError(f"MODEL: {path.name} is a Keras model but keras is not installed; "
                       "pip install 'seqacts[keras]' and a backend (tensorflow, jax or torch)"
                       ) from err
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as err:
        text = " ".join(str(err).split())
        if "Lambda" in text or "safe_mode" in text:
            raise CLIError(
                f"MODEL: {path.name} holds a Lambda layer (or other Python code), which "
                "safe_mode refuses to load because loading it would run that code; replace "
                "the Lambda with a built-in or registered custom layer and save it again"
            ) from err
        raise CLIError(f"MODEL: cannot load {path.name} with keras.saving.load_model "
                       f"(safe_mode=True): {text[:300]}") from err
