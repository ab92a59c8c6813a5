"""What seqacts knows about Keras' recurrent cells, as plain data (neither torch nor keras).

Keras packs each cell's gates side by side in ``kernel`` (input -> units * gates),
``recurrent_kernel`` (units -> units * gates) and ``bias``, in the order given by
:data:`KERNEL_ORDER`; the dataset names them as the schema does for PyTorch's layers.
"""

from __future__ import annotations

__all__ = [
    "CELL_KINDS",
    "KERNEL_ORDER",
    "KERAS_DOCS",
    "KERAS_INTERNALS",
    "STATES",
    "description",
]

#: Keras cell class name -> the seqacts kind recorded for it.
CELL_KINDS: dict[str, str] = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}

#: The states each kind carries from step to step, in Keras' order.
STATES: dict[str, tuple[str, ...]] = {"LSTM": ("h", "c"), "GRU": ("h",), "SimpleRNN": ("h",)}

#: Per kind, the per-step internals recorded besides ``h``: the schema's names.
KERAS_INTERNALS: dict[str, tuple[str, ...]] = {
    "LSTM": ("c", "input_gate", "forget_gate", "cell_gate", "output_gate"),
    "GRU": ("update_gate", "reset_gate", "new_gate"),
    "SimpleRNN": ("preactivation",),
}

#: The gates in their order of column blocks in ``kernel``/``recurrent_kernel``/``bias``:
#: Keras' i, f, c, o and z, r, h.
KERNEL_ORDER: dict[str, tuple[str, ...]] = {
    "LSTM": ("input_gate", "forget_gate", "cell_gate", "output_gate"),
    "GRU": ("update_gate", "reset_gate", "new_gate"),
    "SimpleRNN": ("preactivation",),
}

_LSTM = {
    "c": "c_t = f_t * c_{t-1} + i_t * g_t (Keras LSTMCell; W = kernel, U = recurrent_kernel)",
    "input_gate": "i_t = recurrent_activation(x_t W_i + h_{t-1} U_i + b_i)",
    "forget_gate": "f_t = recurrent_activation(x_t W_f + h_{t-1} U_f + b_f)",
    "cell_gate": "g_t = activation(x_t W_c + h_{t-1} U_c + b_c)",
    "output_gate": "o_t = recurrent_activation(x_t W_o + h_{t-1} U_o + b_o); "
                   "h_t = o_t * activation(c_t)",
}
_GRU_COMMON = {
    "update_gate": "z_t = recurrent_activation(x_t W_z + b_z + h_{t-1} U_z [+ b'_z])",
    "reset_gate": "r_t = recurrent_activation(x_t W_r + b_r + h_{t-1} U_r [+ b'_r])",
}
_NEW_GATE = {
    True: "n_t = activation(x_t W_h + b_h + r_t * (h_{t-1} U_h + b'_h)) (reset_after=True, "
          "b' the recurrent bias); h_t = z_t * h_{t-1} + (1 - z_t) * n_t",
    False: "n_t = activation(x_t W_h + b_h + (r_t * h_{t-1}) U_h) (reset_after=False); "
           "h_t = z_t * h_{t-1} + (1 - z_t) * n_t",
}
_SIMPLE = {"preactivation": "a_t = x_t W + b + h_{t-1} U; h_t = activation(a_t)"}

#: ``long_name`` of each Keras variable that differs from the schema's.
KERAS_DOCS: dict[str, str] = {
    "mask": "step mask",
}


def description(kind: str, name: str, reset_after: bool = True) -> str | None:
    """The equation a Keras kind's internal follows (``None`` when it has no such internal)."""
    if kind == "LSTM":
        return _LSTM.get(name)
    if kind == "GRU":
        return _NEW_GATE[reset_after] if name == "new_gate" else _GRU_COMMON.get(name)
    if kind == "SimpleRNN":
        return _SIMPLE.get(name)
    return None
