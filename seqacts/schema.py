"""Names of the recorded dataset's kinds and per-timestep internals, as plain data.

Torch-free, so the analyses, the accessor and the command line can use them without loading
PyTorch; :mod:`seqacts.capture.specs` holds the rest of PyTorch's layout.
"""

from __future__ import annotations

__all__ = ["KINDS", "GATES", "CELL_BASE_KIND"]

#: Recordable module kinds: the ``mode`` of an ``nn.RNNBase`` or the class of a cell.
KINDS: tuple[str, ...] = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU", "LSTMCell", "GRUCell", "RNNCell")

#: The per-timestep internals each stack kind computes, in PyTorch's gate order (i, f, g, o; r, z, n).
GATES: dict[str, tuple[str, ...]] = {
    "LSTM": ("c", "input_gate", "forget_gate", "cell_gate", "output_gate"),
    "GRU": ("reset_gate", "update_gate", "new_gate"),
    "RNN_TANH": ("preactivation",),
    "RNN_RELU": ("preactivation",),
}

#: The stack kind whose equations a cell follows (RNNCell depends on its nonlinearity).
CELL_BASE_KIND: dict[str, str] = {"LSTMCell": "LSTM", "GRUCell": "GRU"}
