"""What a recurrent module is, as capture needs to know it: its kind, its layers, its weights.

The torch-free facts (kinds, internals, gate order, weights per direction) live in
:mod:`seqacts.schema`; this module applies them to ``nn.Module`` objects and weight tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..schema import weights_per_direction

__all__ = ["DirectionWeights", "LayerSpec", "kind_of", "layer_weights", "nonlinearity"]


def kind_of(module: nn.Module) -> str | None:
    """Return the seqacts kind of a module, or None when it is not recurrent."""
    if isinstance(module, nn.RNNBase):
        return str(module.mode)
    if isinstance(module, nn.LSTMCell):
        return "LSTMCell"
    if isinstance(module, nn.GRUCell):
        return "GRUCell"
    if isinstance(module, nn.RNNCell):
        return "RNNCell"
    return None


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

    @staticmethod
    def for_module(path: str, module: nn.Module) -> list[LayerSpec]:
        """All layer specs of one recurrent module at ``path`` (``""`` for the root)."""
        kind = kind_of(module)
        if kind is None:
            return []
        if isinstance(module, nn.RNNBase):
            hidden = int(module.hidden_size)
            out = int(module.proj_size) if getattr(module, "proj_size", 0) else hidden
            prefix = f"{path}." if path else ""
            return [
                LayerSpec(
                    label=f"{prefix}l{k}",
                    module_path=path,
                    kind=kind,
                    index=k,
                    n_units=out,
                    n_cell_units=hidden,
                    n_directions=2 if module.bidirectional else 1,
                    is_cell=False,
                )
                for k in range(int(module.num_layers))
            ]
        hidden = int(module.hidden_size)  # type: ignore[arg-type]
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

