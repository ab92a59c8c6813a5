"""Whether a model left in training mode would record different values on every call."""

from __future__ import annotations

import warnings

from torch import nn

from ..errors import TrainingModeWarning
from .modules import is_stack

__all__ = ["DROPOUT_TYPES", "active_dropout", "warn_if_random"]

#: Modules that zero random elements in training mode.
DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)  # fmt: skip


def active_dropout(model: nn.Module) -> list[str]:
    """``"path (what)"`` for every module of ``model`` that applies dropout right now."""
    found: list[str] = []
    if not isinstance(model, nn.Module):
        return found  # record() says what is wrong with it
    for path, module in model.named_modules():
        name = path or "model"
        if not module.training:
            continue
        if isinstance(module, DROPOUT_TYPES) and getattr(module, "p", 0) > 0:
            found.append(f"{name} ({type(module).__name__}(p={module.p}))")
        elif is_stack(module) and module.dropout > 0 and module.num_layers > 1:
            found.append(f"{name} ({type(module).__name__} dropout={module.dropout})")
    return found


def warn_if_random(model: nn.Module, stacklevel: int = 3) -> None:
    """Warn (:class:`TrainingModeWarning`) when ``model`` would apply dropout."""
    found = active_dropout(model)
    if found:
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        warnings.warn(
            f"the model is in training mode with dropout ({', '.join(found[:3])}{more}), so two "
            "recordings of one input differ; call model.eval() first unless you mean to record "
            "the dropout",
            TrainingModeWarning,
            stacklevel=stacklevel,
        )
