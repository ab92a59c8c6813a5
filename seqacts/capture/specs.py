"""What a recurrent module is, as capture needs to know it: its kind, its layers, its weights.

The torch-free facts (kinds, internals, gate order) live in :mod:`seqacts.kinds`; which module
is of which kind in :mod:`seqacts.capture.modules`; this module describes a module's layers and
splits a fused stack's weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..schema import weights_per_direction

__all__ = ["DirectionWeights", "LayerSpec", "cell_layer", "layer_weights", "nonlinearity", "stack_layers"]


def nonlinearity(module: object) -> str:
    """The ``nonlinearity`` of an ``RNNCell`` (``"tanh"`` for every other module)."""
    return str(getattr(module, "nonlinearity", "tanh"))


@dataclass(frozen=True)
class LayerSpec:
    """One recordable layer: layer ``index`` of a fused stack, or a whole cell module."""

    label: str
    module_path: str
    kind: str
    index: int
    n_units: int
    n_cell_units: int
    n_directions: int
    is_cell: bool
    #: recorded from the module's own call (a Python cell), not from a kernel call
    hooked: bool = False


def stack_layers(path: str, module: nn.Module, kind: str) -> list[LayerSpec]:
    """The layer specs of a fused stack (``nn.RNN/LSTM/GRU``) at ``path`` (``""``: the root)."""
    hidden = int(module.hidden_size)  # type: ignore[arg-type]
    proj = int(getattr(module, "proj_size", 0) or 0)
    prefix = f"{path}." if path else ""
    return [
        LayerSpec(
            label=f"{prefix}l{k}",
            module_path=path,
            kind=kind,
            index=k,
            n_units=proj or hidden,
            n_cell_units=hidden,
            n_directions=2 if module.bidirectional else 1,
            is_cell=False,
        )
        for k in range(int(module.num_layers))  # type: ignore[arg-type]
    ]


def cell_layer(path: str, module: nn.Module, kind: str, hooked: bool = False) -> list[LayerSpec]:
    """The one layer spec of a cell module: one call is one timestep.

    Its width is the module's ``hidden_size``; a Python cell without one gets the width of the
    first state it returns (``n_units`` 0 until then).
    """
    hidden = getattr(module, "hidden_size", 0)
    hidden = hidden if isinstance(hidden, int) else 0
    return [
        LayerSpec(
            label=path or "cell",
            module_path=path,
            kind=kind,
            index=0,
            n_units=hidden,
            n_cell_units=hidden,
            n_directions=1,
            is_cell=True,
            hooked=hooked,
        )
    ]


@dataclass(frozen=True)
class DirectionWeights:
    """The weights one direction of one layer uses (``None`` where the layer has none)."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor | None
    b_hh: torch.Tensor | None
    w_hr: torch.Tensor | None


def layer_weights(
    flat: list[torch.Tensor], has_biases: bool, has_projection: bool, bidirectional: bool, k: int
) -> list[DirectionWeights]:
    """Split layer ``k``'s weights out of a fused stack's flat list, one entry per direction.

    PyTorch orders them per layer, per direction: ``w_ih, w_hh[, b_ih, b_hh][, w_hr]``.
    """
    per_direction = weights_per_direction(has_biases, has_projection)
    n_dir = 2 if bidirectional else 1
    start = k * per_direction * n_dir
    out = []
    for d in range(n_dir):
        chunk = flat[start + d * per_direction : start + (d + 1) * per_direction]
        b_ih, b_hh = (chunk[2], chunk[3]) if has_biases else (None, None)
        out.append(
            DirectionWeights(
                w_ih=chunk[0],
                w_hh=chunk[1],
                b_ih=b_ih,
                b_hh=b_hh,
                w_hr=chunk[-1] if has_projection else None,
            )
        )
    return out

