"""The dataset's names (dims, variables, coordinates) and tables about PyTorch's kinds.

Capture, storage and analysis all read these tables; nothing here imports torch. The kinds'
facts are registered in :mod:`seqacts.kinds` and the tables about them derived from it. Every
mapping points the same way: from a kind (or a variable name) to what belongs to it.
"""

from __future__ import annotations

from .kinds import builtin
from .kinds import registry as kinds_registry

__all__ = [
    "CELL_BASE_KIND",
    "CELL_KERNELS",
    "CELL_STATE_VARS",
    "COMPRESSION_NAMES",
    "CONV_DIMS",
    "COORDS",
    "DIMS",
    "DIRECTIONS",
    "INTERNALS",
    "INTERNAL_ACTIVATION",
    "INTERNAL_RANGE",
    "KINDS",
    "LAYER_COORDS",
    "PACK_NAMES",
    "SAMPLE_COORDS",
    "SCHEMA_NAMES",
    "SIGMOID_GATES",
    "STACK_KERNELS",
    "STACK_KINDS",
    "STATE_DOCS",
    "STATE_VARS",
    "TANH_BOUNDED_KINDS",
    "VARIABLE_DOCS",
    "base_kind",
    "gate_order",
    "weights_per_direction",
]

#: The dataset's dimensions, in the order of ``h``'s axes.
DIMS: tuple[str, ...] = ("sample", "layer", "direction", "time", "unit")

#: The state variables every layer has (sample, layer, direction, unit), and those a kind with a
#: cell state adds.
STATE_VARS: tuple[str, ...] = ("h_0", "h_n")
CELL_STATE_VARS: tuple[str, ...] = ("c_0", "c_n")

#: Coordinates along ``layer``, and along ``(sample, layer)``: ``call``/``call_row`` only when
#: a sample's rows are not simply one call's batch.
LAYER_COORDS: tuple[str, ...] = ("module", "kind", "n_units", "n_cell_units", "n_directions")
SAMPLE_COORDS: tuple[str, ...] = ("length", "nonfinite", "call", "call_row")
COORDS: tuple[str, ...] = (*LAYER_COORDS, *SAMPLE_COORDS)

#: The coordinate along ``sample`` naming the ``model(...)`` call (group) a sample came from.
MODEL_CALL = "model_call"

#: The states a ``chain=`` layer's calls received, recorded with ``h``'s dims.
RECEIVED_VARS: tuple[str, ...] = ("h_in", "c_in")

#: The kinds PyTorch's recurrent modules have, as registered in :mod:`seqacts.kinds`.
#: Fused stack kinds: the ``mode`` of an ``nn.RNNBase``.
STACK_KINDS: tuple[str, ...] = tuple(k.name for k in builtin.STACK_KINDS)

#: Recordable kinds of PyTorch's modules: the stack kinds and the cell classes. Other kinds
#: (Python cells, other front ends) are in the registry: :func:`seqacts.kinds.registered_kinds`.
KINDS: tuple[str, ...] = tuple(k.name for k in builtin.PYTORCH_KINDS)

#: The stack kind whose equations a cell follows; ``RNNCell`` depends on its nonlinearity
#: (see :func:`base_kind`).
CELL_BASE_KIND: dict[str, str] = {
    k.name: k.base for k in builtin.CELL_KINDS if not k.by_nonlinearity
}

#: Per stack kind, the per-timestep internals it computes. The gates come in PyTorch's order
#: of row chunks in ``weight_ih``/``weight_hh`` (i, f, g, o; r, z, n).
INTERNALS: dict[str, tuple[str, ...]] = {k.name: k.internals for k in builtin.STACK_KINDS}

#: The activation each internal applies to its pre-activation; ``None``: none (``c`` is a
#: scan, not a gate; ``preactivation`` is the value before tanh/relu).
INTERNAL_ACTIVATION: dict[str, str | None] = {
    name: act for k in builtin.STACK_KINDS for name, act in k.activations.items()
}

#: The closed range each activation's values cannot leave.
ACTIVATION_RANGE: dict[str, tuple[float, float]] = dict(kinds_registry.ACTIVATION_RANGE)

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
TANH_BOUNDED_KINDS: frozenset[str] = frozenset(
    k.name for k in builtin.PYTORCH_KINDS if k.tanh_bounded
)

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
    """The kind whose equations apply (``LSTM``, ``GRU``, ``RNN_TANH``, ``RNN_RELU`` for
    PyTorch's kinds), as the registry (:mod:`seqacts.kinds`) declares it.

    Parameters
    ----------
    kind : str
        A registered kind (see :data:`KINDS`).
    nonlinearity : {"tanh", "relu"}
        The ``nonlinearity`` of an ``RNNCell`` (ignored for other kinds).
    """
    return kinds_registry.base_kind(kind, nonlinearity)


def gate_order(kind: str) -> tuple[str, ...]:
    """The gates of a kind in their order of row chunks in ``weight_ih``: i,f,g,o; r,z,n.

    An RNN has a single chunk, its pre-activation.
    """
    return kinds_registry.kind_spec(kind).gates


def weights_per_direction(has_biases: bool, has_projection: bool) -> int:
    """How many tensors one direction of one layer owns: ``w_ih, w_hh[, b_ih, b_hh][, w_hr]``."""
    return 2 + (2 if has_biases else 0) + (1 if has_projection else 0)


#: ``long_name`` and ``description`` attributes of every recorded variable: the states here,
#: each kind's internals as its :class:`~seqacts.kinds.KindSpec` documents them (a name in
#: several kinds: the first registered).
STATE_DOCS: dict[str, tuple[str, str]] = {
    "h": ("hidden state", "h_t: the layer's output at step t (after the projection when proj_size > 0)"),
    "h_0": ("initial hidden state", "h_0, zeros when none was passed"),
    "h_n": ("final hidden state", "h at each sample's last valid step"),
    "c_0": ("initial cell state", "LSTM c_0, zeros when none was passed"),
    "c_n": ("final cell state", "LSTM c at each sample's last valid step"),
    "h_in": (
        "received hidden state",
        "chain= layers only: the hidden state each call received, at the step that used it "
        "(a cell step's h_{t-1} as passed, e.g. after a decay); NaN at a call's other steps",
    ),
    "c_in": (
        "received cell state",
        "chain= LSTM layers only: the cell state each call received, at the step that used it; "
        "NaN at a call's other steps",
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
}
VARIABLE_DOCS: dict[str, tuple[str, str]] = dict(STATE_DOCS)
for _kind in builtin.STACK_KINDS:
    for _name, _doc in _kind.docs.items():
        VARIABLE_DOCS.setdefault(_name, _doc)

#: Variables as wide as the cell (``n_cell_units``) rather than as ``h`` (``n_units``).
CELL_WIDTH_VARS: frozenset[str] = frozenset(
    [v for names in INTERNALS.values() for v in names] + list(CELL_STATE_VARS) + ["c_in"]
)

#: Every name the recorded schema uses (dims, variables, coordinates): a per-sample label
#: (``--coords``, a ``.nc`` file's coordinates) must not take one of them.
SCHEMA_NAMES: frozenset[str] = frozenset(
    {*DIMS, *COORDS, "h", *STATE_VARS, *CELL_STATE_VARS, MODEL_CALL, *RECEIVED_VARS,
     *(n for k in builtin.PYTORCH_KINDS + builtin.USER_CELL_KINDS for n in k.internals)}
)

#: The dims of a convolution's output after ``sample``, by its number of spatial dims; a
#: ``modules=`` output ``<name>`` gets them as ``<name>.channel``, ``<name>.time``... (other
#: outputs: ``<name>.dim1``, ``<name>.dim2``...).
CONV_DIMS: dict[int, tuple[str, ...]] = {
    1: ("channel", "time"),
    2: ("channel", "height", "width"),
    3: ("channel", "depth", "height", "width"),
}
