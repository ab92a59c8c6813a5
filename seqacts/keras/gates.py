"""The gates of Keras' cells over a whole call, from the cell's own weights.

One batched product over all steps, in the cell's order of operations (``implementation=2``),
given each step's input and the state it started from. Which function serves a kind is a fact
of the kind (:func:`seqacts.kinds.keras_kinds.gate_equations`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..kinds.keras_kinds import gate_equations

__all__ = ["gate_values", "gru_gates", "lstm_gates", "simple_rnn_gates"]


def gate_values(cell: Any, kind: str, x: Any, h_prev: Any) -> dict[str, Any]:
    """Every gate of ``cell`` at every step, ``(sample, time, unit)``, from its weights.

    ``x`` holds each step's input and ``h_prev`` the state the step started from, both in
    processing order; the operations are the cell's own (``implementation=2``) over all steps.
    """
    equations: Callable[[Any, Any, Any], dict[str, Any]] = globals()[gate_equations(kind)]
    return equations(cell, x, h_prev)


def lstm_gates(cell: Any, x: Any, h_prev: Any) -> dict[str, Any]:
    """``LSTMCell``: ``z = x W + h U + b`` split into i, f, c, o."""
    from keras import ops

    z = ops.matmul(x, cell.kernel)
    z = ops.add(z, ops.matmul(h_prev, cell.recurrent_kernel))
    if cell.use_bias:
        z = ops.add(z, cell.bias)
    z0, z1, z2, z3 = ops.split(z, 4, axis=-1)
    ra = cell.recurrent_activation
    return {"input_gate": ra(z0), "forget_gate": ra(z1), "cell_gate": cell.activation(z2),
            "output_gate": ra(z3)}


def gru_gates(cell: Any, x: Any, h_prev: Any) -> dict[str, Any]:
    """``GRUCell``, either ``reset_after``: z, r from both products, the new gate after."""
    from keras import ops

    units = int(cell.units)
    input_bias = recurrent_bias = None
    if cell.use_bias:
        if not cell.reset_after:
            input_bias = cell.bias
        else:
            input_bias, recurrent_bias = (
                ops.squeeze(e, axis=0) for e in ops.split(cell.bias, cell.bias.shape[0], axis=0))
    matrix_x = ops.matmul(x, cell.kernel)
    if input_bias is not None:
        matrix_x = ops.add(matrix_x, input_bias)
    x_z, x_r, x_h = ops.split(matrix_x, 3, axis=-1)
    if cell.reset_after:
        inner = ops.matmul(h_prev, cell.recurrent_kernel)
        if recurrent_bias is not None:
            inner = inner + recurrent_bias
    else:
        inner = ops.matmul(h_prev, cell.recurrent_kernel[:, : 2 * units])
    z = cell.recurrent_activation(x_z + inner[..., :units])
    r = cell.recurrent_activation(x_r + inner[..., units : 2 * units])
    if cell.reset_after:
        rec_h = r * inner[..., 2 * units :]
    else:
        rec_h = ops.matmul(r * h_prev, cell.recurrent_kernel[:, 2 * units :])
    return {"update_gate": z, "reset_gate": r, "new_gate": cell.activation(x_h + rec_h)}


def simple_rnn_gates(cell: Any, x: Any, h_prev: Any) -> dict[str, Any]:
    """``SimpleRNNCell``: the pre-activation ``x W + b + h U``."""
    from keras import ops

    a = ops.matmul(x, cell.kernel)
    if cell.bias is not None:
        a = ops.add(a, cell.bias)
    return {"preactivation": a + ops.matmul(h_prev, cell.recurrent_kernel)}
