"""Facts about PyTorch's recurrent modules, kept as data in one place.

Which kinds exist, which internals each computes, how many weight tensors a layer of a fused
stack owns, and where each layer's weights sit in ``module._flat_weights``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..schema import CELL_BASE_KIND, GATES, KINDS

__all__ = ["KINDS", "GATES", "CELL_BASE_KIND", "LayerSpec", "layer_weights", "kind_of"]

#: Kernel names in ``torch._VF`` for fused stacks and for single cell steps.
STACK_KERNELS: dict[str, str] = {
    "LSTM": "lstm",
    "GRU": "gru",
    "RNN_TANH": "rnn_tanh",
    "RNN_RELU": "rnn_relu",
}
CELL_KERNELS: dict[str, str] = {
    "lstm_cell": "LSTM",
    "gru_cell": "GRU",
    "rnn_tanh_cell": "RNN_TANH",
    "rnn_relu_cell": "RNN_RELU",
}

DIRECTIONS: tuple[str, str] = ("forward", "backward")


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


def base_kind(kind: str, module: nn.Module) -> str:
    """The stack kind (``LSTM``, ``GRU``, ``RNN_TANH``, ``RNN_RELU``) whose equations apply."""
    if kind == "RNNCell":
        return "RNN_RELU" if getattr(module, "nonlinearity", "tanh") == "relu" else "RNN_TANH"
    return CELL_BASE_KIND.get(kind, kind)


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


def weights_per_layer(has_biases: bool, has_projection: bool, bidirectional: bool) -> int:
    """How many tensors of a fused stack's flat weight list belong to one layer."""
    per_direction = 2 + (2 if has_biases else 0) + (1 if has_projection else 0)
    return per_direction * (2 if bidirectional else 1)


def layer_weights(
    flat: list[torch.Tensor], has_biases: bool, has_projection: bool, bidirectional: bool, k: int
) -> list[DirectionWeights]:
    """Split layer ``k``'s weights out of a fused stack's flat list, one entry per direction.

    PyTorch orders them per layer, per direction: ``w_ih, w_hh[, b_ih, b_hh][, w_hr]``.
    """
    per_direction = 2 + (2 if has_biases else 0) + (1 if has_projection else 0)
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


#: ``long_name`` and ``description`` attributes of every recorded variable.
VARIABLE_DOCS: dict[str, tuple[str, str]] = {
    "h": ("hidden state", "h_t: the layer's output at step t (after the projection when proj_size > 0)"),
    "h_0": ("initial hidden state", "h_0, zeros when none was passed"),
    "h_n": ("final hidden state", "h at each sample's last valid step"),
    "c_0": ("initial cell state", "LSTM c_0, zeros when none was passed"),
    "c_n": ("final cell state", "LSTM c at each sample's last valid step"),
    "c": ("cell state", "c_t = f_t * c_{t-1} + i_t * g_t"),
    "input_gate": ("input gate", "i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)"),
    "forget_gate": ("forget gate", "f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)"),
    "cell_gate": ("cell gate", "g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)"),
    "output_gate": (
        "output gate",
        "o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho); h_t = o_t * tanh(c_t) "
        "(times W_hr when proj_size > 0)",
    ),
    "reset_gate": ("reset gate", "r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)"),
    "update_gate": ("update gate", "z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)"),
    "new_gate": (
        "new gate",
        "n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn)); "
        "h_t = (1 - z_t) * n_t + z_t * h_{t-1}",
    ),
    "preactivation": (
        "pre-activation",
        "a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh; h_t = tanh(a_t) or relu(a_t)",
    ),
}
