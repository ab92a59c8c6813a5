"""The Keras 3 kinds: what seqacts knows about Keras' recurrent cells, as plain data.

Neither torch nor keras is imported. A Keras ``LSTM`` or ``GRU`` layer is recorded as the
registered kind of that name (the schema's internals: ``c``, ``input_gate``, ``forget_gate``,
``cell_gate``, ``output_gate``; ``reset_gate``, ``update_gate``, ``new_gate``); ``SimpleRNN``
is registered here. Keras packs each cell's gates side by side in ``kernel`` (input -> units *
gates), ``recurrent_kernel`` and ``bias``, in the order :data:`KERNEL_ORDER` gives (Keras' i,
f, c, o and z, r, h); the equations, Keras' own, go in the variables' descriptions
(:func:`description`), the GRU's per ``reset_after`` variant.
"""

from __future__ import annotations

from .registry import KindSpec, kind_spec, register_kind

__all__ = [
    "CELL_KINDS",
    "KERAS_LSTM",
    "KERNEL_ORDER",
    "MASK_DOC",
    "SIMPLE_RNN",
    "description",
    "gate_equations",
    "is_gru_cell",
    "keras_internals",
]

KERAS_LSTM, KERAS_GRU, KERAS_SIMPLE_RNN = "LSTM", "GRU", "SimpleRNN"

SIMPLE_RNN = register_kind(KindSpec(
    name=KERAS_SIMPLE_RNN, internals=("preactivation",),
    docs={"preactivation": ("pre-activation",
                            "a_t = x_t W + b + h_{t-1} U; h_t = activation(a_t) (Keras SimpleRNN)")},
))

#: Keras cell class name -> the kind recorded for it.
CELL_KINDS: dict[str, str] = {"LSTMCell": KERAS_LSTM, "GRUCell": KERAS_GRU,
                              "SimpleRNNCell": KERAS_SIMPLE_RNN}

#: The gates in their order of column blocks in ``kernel``/``recurrent_kernel``/``bias``.
KERNEL_ORDER: dict[str, tuple[str, ...]] = {
    KERAS_LSTM: ("input_gate", "forget_gate", "cell_gate", "output_gate"),
    KERAS_GRU: ("update_gate", "reset_gate", "new_gate"),
    KERAS_SIMPLE_RNN: ("preactivation",),
}

#: Per kind, the name of the function in :mod:`seqacts.keras.gates` computing its gates.
_GATE_EQUATIONS = {KERAS_LSTM: "lstm_gates", KERAS_GRU: "gru_gates",
                   KERAS_SIMPLE_RNN: "simple_rnn_gates"}

_LSTM = {
    "c": "c_t = f_t * c_{t-1} + i_t * g_t (Keras LSTMCell; W = kernel, U = recurrent_kernel)",
    "input_gate": "i_t = recurrent_activation(x_t W_i + h_{t-1} U_i + b_i)",
    "forget_gate": "f_t = recurrent_activation(x_t W_f + h_{t-1} U_f + b_f)",
    "cell_gate": "g_t = activation(x_t W_c + h_{t-1} U_c + b_c)",
    "output_gate": "o_t = recurrent_activation(x_t W_o + h_{t-1} U_o + b_o); "
                   "h_t = o_t * activation(c_t)",
}
_GRU = {
    "update_gate": "z_t = recurrent_activation(x_t W_z + b_z + h_{t-1} U_z [+ b'_z]) (Keras GRU)",
    "reset_gate": "r_t = recurrent_activation(x_t W_r + b_r + h_{t-1} U_r [+ b'_r])",
}
_NEW_GATE = {
    True: "n_t = activation(x_t W_h + b_h + r_t * (h_{t-1} U_h + b'_h)) (reset_after=True, "
          "b' the recurrent bias); h_t = z_t * h_{t-1} + (1 - z_t) * n_t",
    False: "n_t = activation(x_t W_h + b_h + (r_t * h_{t-1}) U_h) (reset_after=False); "
           "h_t = z_t * h_{t-1} + (1 - z_t) * n_t",
}

#: ``long_name`` and ``description`` of the ``mask`` variable.
MASK_DOC: tuple[str, str] = (
    "step mask",
    "1 where the layer ran the step, 0 where Keras' mask skipped it: there h (and c) hold the "
    "state carried from the last unmasked step, the gates what the cell computed and Keras "
    "discarded",
)


def keras_internals(kind: str) -> tuple[str, ...]:
    """The internals recorded for a Keras kind (the registered kind's)."""
    return kind_spec(kind).internals


def gate_equations(kind: str) -> str:
    """The name of the function computing a Keras kind's gates (:mod:`seqacts.keras.gates`)."""
    return _GATE_EQUATIONS[kind]


def description(kind: str, name: str, reset_after: bool = True) -> str | None:
    """The equation a Keras kind's internal follows (``None`` when it has no such internal)."""
    if kind == KERAS_LSTM:
        return _LSTM.get(name)
    if kind == KERAS_GRU:
        return _NEW_GATE[reset_after] if name == "new_gate" else _GRU.get(name)
    if kind == KERAS_SIMPLE_RNN:
        return SIMPLE_RNN.docs[name][1] if name in SIMPLE_RNN.docs else None
    return None


def is_gru_cell(class_name: str) -> bool:
    """Whether a Keras cell class records as a GRU (whose equations depend on ``reset_after``)."""
    return CELL_KINDS.get(class_name) == KERAS_GRU
