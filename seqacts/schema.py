"""Facts about recurrent kinds and the dataset's variables, kept as plain data in one place.

Capture, storage and analysis all read these tables; nothing here imports torch. Every mapping
points the same way: from a kind (or a variable name) to what belongs to it.
"""

from __future__ import annotations

__all__ = [
    "CELL_BASE_KIND",
    "CELL_KERNELS",
    "COMPRESSION_NAMES",
    "DIRECTIONS",
    "INTERNALS",
    "INTERNAL_ACTIVATION",
    "INTERNAL_RANGE",
    "KINDS",
    "PACK_NAMES",
    "SIGMOID_GATES",
    "STACK_KERNELS",
    "STACK_KINDS",
    "TANH_BOUNDED_KINDS",
    "VARIABLE_DOCS",
    "base_kind",
    "gate_order",
    "weights_per_direction",
]

#: Fused stack kinds: the ``mode`` of an ``nn.RNNBase``.
STACK_KINDS: tuple[str, ...] = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")

#: Recordable kinds: the stack kinds and the cell classes.
KINDS: tuple[str, ...] = (*STACK_KINDS, "LSTMCell", "GRUCell", "RNNCell")

#: The stack kind whose equations a cell follows; ``RNNCell`` depends on its nonlinearity
#: (see :func:`base_kind`).
CELL_BASE_KIND: dict[str, str] = {"LSTMCell": "LSTM", "GRUCell": "GRU"}

#: Per stack kind, the per-timestep internals it computes. The gates come in PyTorch's order
#: of row chunks in ``weight_ih``/``weight_hh`` (i, f, g, o; r, z, n).
INTERNALS: dict[str, tuple[str, ...]] = {
    "LSTM": ("c", "input_gate", "forget_gate", "cell_gate", "output_gate"),
    "GRU": ("reset_gate", "update_gate", "new_gate"),
    "RNN_TANH": ("preactivation",),
    "RNN_RELU": ("preactivation",),
}

#: The activation each internal applies to its pre-activation; ``None``: none (``c`` is a
#: scan, not a gate; ``preactivation`` is the value before tanh/relu).
INTERNAL_ACTIVATION: dict[str, str | None] = {
    "c": None,
    "input_gate": "sigmoid",
    "forget_gate": "sigmoid",
    "cell_gate": "tanh",
    "output_gate": "sigmoid",
    "reset_gate": "sigmoid",
    "update_gate": "sigmoid",
    "new_gate": "tanh",
    "preactivation": None,
}

#: The closed range each activation's values cannot leave.
ACTIVATION_RANGE: dict[str, tuple[float, float]] = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}

#: Internals with a bounded range, by name.
INTERNAL_RANGE: dict[str, tuple[float, float]] = {
    name: ACTIVATION_RANGE[act] for name, act in INTERNAL_ACTIVATION.items() if act is not None
}

#: Gates squashed by a sigmoid into (0, 1): the ones with left/right saturation.
SIGMOID_GATES: tuple[str, ...] = tuple(
    name for name, act in INTERNAL_ACTIVATION.items() if act == "sigmoid"
)

#: Kinds whose ``h`` is bounded by tanh to [-1, 1] when there is no projection. ``RNNCell`` is
#: not among them: its dataset ``kind`` does not say whether it uses tanh or relu.
TANH_BOUNDED_KINDS: frozenset[str] = frozenset({"LSTM", "LSTMCell", "GRU", "GRUCell", "RNN_TANH"})

#: Kernel names in ``torch._VF``, per kind: one call runs a whole fused stack, or one cell step.
STACK_KERNELS: dict[str, str] = {
    "LSTM": "lstm",
    "GRU": "gru",
    "RNN_TANH": "rnn_tanh",
    "RNN_RELU": "rnn_relu",
}
CELL_KERNELS: dict[str, str] = {
    "LSTM": "lstm_cell",
    "GRU": "gru_cell",
    "RNN_TANH": "rnn_tanh_cell",
    "RNN_RELU": "rnn_relu_cell",
}

#: Storage options: lossless compressions, and packings of bounded variables.
COMPRESSION_NAMES: tuple[str, ...] = ("zlib", "zstd")
PACK_NAMES: tuple[str, ...] = ("int16",)

#: Labels of the ``direction`` dimension.
DIRECTIONS: tuple[str, str] = ("forward", "backward")


def base_kind(kind: str, nonlinearity: str = "tanh") -> str:
    """The stack kind (``LSTM``, ``GRU``, ``RNN_TANH``, ``RNN_RELU``) whose equations apply.

    Parameters
    ----------
    kind : str
        A kind from :data:`KINDS`.
    nonlinearity : {"tanh", "relu"}
        The ``nonlinearity`` of an ``RNNCell`` (ignored for other kinds).
    """
    if kind == "RNNCell":
        return "RNN_RELU" if nonlinearity == "relu" else "RNN_TANH"
    return CELL_BASE_KIND.get(kind, kind)


def gate_order(kind: str) -> tuple[str, ...]:
    """The gates of a stack kind in their order of row chunks in ``weight_ih``: i,f,g,o; r,z,n.

    An RNN has a single chunk, its pre-activation.
    """
    return tuple(n for n in INTERNALS[kind] if n != "c")


def weights_per_direction(has_biases: bool, has_projection: bool) -> int:
    """How many tensors one direction of one layer owns: ``w_ih, w_hh[, b_ih, b_hh][, w_hr]``."""
    return 2 + (2 if has_biases else 0) + (1 if has_projection else 0)


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
    "grad_h": (
        "score gradient of h",
        "d sum(score) / d h_t: the total derivative through all later steps, upper layers and "
        "the output (extract(..., gradients=score))",
    ),
    "grad_c": (
        "score gradient of c",
        "d sum(score) / d c_t, c_t as passed to step t+1 with h_t held (LSTM layers)",
    ),
    "preactivation": (
        "pre-activation",
        "a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh; h_t = tanh(a_t) or relu(a_t)",
    ),
}

#: Variables as wide as the cell (``n_cell_units``) rather than as ``h`` (``n_units``).
CELL_WIDTH_VARS: frozenset[str] = frozenset(
    [v for names in INTERNALS.values() for v in names] + ["c_0", "c_n"]
)
