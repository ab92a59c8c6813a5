"""The seam through which ``extract(..., gradients=score)`` reaches the state gradients.

The gradients need a forward split into steps with every state a node of the autograd graph,
which the kernel editors of :mod:`seqacts.interventions` provide; capture never imports them.
:mod:`seqacts.interventions.gradients` registers its entry point here when imported (importing
``seqacts.interventions`` imports it; ``seqacts.extract`` does so on first use).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import xarray as xr
from torch import nn

from ..errors import OptionError

__all__ = ["register", "with_gradients"]

#: ``(model, options, args, kwargs, grad, score) -> dataset``: the recording with ``grad_h``...
Entry = Callable[[nn.Module, Any, tuple[Any, ...], dict[str, Any], bool, Callable[[Any], Any]],
                 xr.Dataset]

_ENTRY: list[Entry] = []


def register(entry: Entry) -> None:
    """Compute ``gradients=`` recordings with ``entry`` (registering again replaces it)."""
    _ENTRY[:] = [entry]


def with_gradients(model: nn.Module, options: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any], grad: bool, score: Callable[[Any], Any]) -> xr.Dataset:
    """The recording of ``model(*args, **kwargs)`` with its state gradients."""
    if not _ENTRY:
        raise OptionError(
            "gradients: the state gradients live in seqacts.interventions, which is not "
            "imported; import seqacts.interventions (seqacts.extract does) and call again"
        )
    return _ENTRY[0](model, options, args, kwargs, grad, score)
