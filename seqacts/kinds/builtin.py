"""The kinds seqacts knows without being told: PyTorch's recurrent modules and Python cells.

PyTorch's: the fused stacks (``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` in its two ``mode`` s) and the
cell classes that follow their equations. Python cells (``cells=`` or
:func:`seqacts.register_cell`) are recorded from the state they return: ``cell(h)`` carries
``h``, ``cell(h,c)`` also a cell state, recorded per step as the internal ``c``.
"""

from __future__ import annotations

from .registry import KindSpec, register_kind

__all__ = ["CELL_KINDS", "PYTORCH_KINDS", "STACK_KINDS", "USER_CELL_KINDS", "user_cell_kind",
           "user_cell_label"]

_LSTM_DOCS = {
    "c": ("cell state", "c_t = f_t * c_{t-1} + i_t * g_t"),
    "input_gate": ("input gate", "i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)"),
    "forget_gate": ("forget gate", "f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)"),
    "cell_gate": ("cell gate", "g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)"),
    "output_gate": (
        "output gate",
        "o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho); h_t = o_t * tanh(c_t) "
        "(times W_hr when proj_size > 0)",
    ),
}
_GRU_DOCS = {
    "reset_gate": ("reset gate", "r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)"),
    "update_gate": ("update gate", "z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)"),
    "new_gate": (
        "new gate",
        "n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn)); "
        "h_t = (1 - z_t) * n_t + z_t * h_{t-1}",
    ),
}
_RNN_DOCS = {
    "preactivation": (
        "pre-activation",
        "a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh; h_t = tanh(a_t) or relu(a_t)",
    ),
}

LSTM = KindSpec(
    name="LSTM", states=("h", "c"),
    internals=("c", "input_gate", "forget_gate", "cell_gate", "output_gate"),
    activations={"input_gate": "sigmoid", "forget_gate": "sigmoid", "cell_gate": "tanh",
                 "output_gate": "sigmoid"},
    docs=_LSTM_DOCS, tanh_bounded=True,
)
GRU = KindSpec(
    name="GRU", internals=("reset_gate", "update_gate", "new_gate"),
    activations={"reset_gate": "sigmoid", "update_gate": "sigmoid", "new_gate": "tanh"},
    docs=_GRU_DOCS, tanh_bounded=True,
)
RNN_TANH = KindSpec(name="RNN_TANH", internals=("preactivation",), docs=_RNN_DOCS,
                    tanh_bounded=True)
RNN_RELU = KindSpec(name="RNN_RELU", internals=("preactivation",), docs=_RNN_DOCS)

#: Fused stack kinds: the ``mode`` of an ``nn.RNNBase``.
STACK_KINDS: tuple[KindSpec, ...] = (LSTM, GRU, RNN_TANH, RNN_RELU)

#: PyTorch's cell classes, each following a stack kind's equations. ``RNNCell``'s label does
#: not say its nonlinearity, so its ``h`` is not known to be tanh-bounded from the label alone.
CELL_KINDS: tuple[KindSpec, ...] = (
    KindSpec(name="LSTMCell", base="LSTM", states=LSTM.states, internals=LSTM.internals,
             activations=LSTM.activations, docs=LSTM.docs, tanh_bounded=True, one_step=True),
    KindSpec(name="GRUCell", base="GRU", internals=GRU.internals, activations=GRU.activations,
             docs=GRU.docs, tanh_bounded=True, one_step=True),
    KindSpec(name="RNNCell", base="RNN_TANH", internals=RNN_TANH.internals, docs=_RNN_DOCS,
             one_step=True, by_nonlinearity={"relu": "RNN_RELU"}),
)

PYTORCH_KINDS: tuple[KindSpec, ...] = (*STACK_KINDS, *CELL_KINDS)


def user_cell_kind(name: str, state: tuple[str, ...]) -> KindSpec:
    """The facts of a Python cell recorded from the state it returns: no gates, and ``c`` (for
    an ``("h", "c")`` state) recorded per step as the cell returned it."""
    return KindSpec(
        name=name, states=state, internals=("c",) if "c" in state else (), one_step=True,
        docs={"c": ("cell state", "c_t: the cell state the cell returned at step t")},
    )


def user_cell_label(state: tuple[str, ...]) -> str:
    """The kind label of a Python cell carrying ``state``: ``cell(h)`` or ``cell(h,c)``."""
    return f"cell({','.join(state)})"


#: The kinds of cells given by ``cells=``: labelled by the state they carry.
USER_CELL_KINDS: tuple[KindSpec, ...] = tuple(
    user_cell_kind(user_cell_label(state), state) for state in (("h",), ("h", "c"))
)

for _spec in (*PYTORCH_KINDS, *USER_CELL_KINDS):
    register_kind(_spec)
