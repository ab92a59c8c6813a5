"""What a recurrent kernel call is, as the recorder and the interventions receive it.

:mod:`seqacts.capture.kernels` patches ``torch._VF``'s kernels and builds these records of each
call: a fused stack call run layer by layer (:class:`StackCall`, one :class:`LayerRun` per
layer), a cell step (:class:`CellCall`), a layer about to run (:class:`LayerCall`). A
:class:`Sink` is what receives them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor

__all__ = ["CellCall", "LayerCall", "LayerRun", "Sink", "StackCall"]


@dataclass
class LayerRun:
    """What one layer of a fused stack computed during one kernel call (kernel layout)."""

    input: Tensor  # (T, N, I) / (N, T, I) when batch_first / packed data (sum(batch_sizes), I)
    output: Tensor  # same layout as input, last dim D * H_out
    h0: Tensor  # (D, N_sorted, H_out)
    hn: Tensor
    c0: Tensor | None  # (D, N_sorted, H) for LSTM
    cn: Tensor | None
    weights: list[Tensor]  # this layer's slice of the flat weight list
    #: per direction, the kernel's own gates when read from its workspace (see workspace.py)
    gates: tuple[Tensor, ...] = ()
    #: set by an editor that wrote cell states: ``(direction, t, c_t) -> edited c_t`` (rows in
    #: the kernel's order), so that a recorder recomputing ``c`` applies the same edits
    c_edit: Callable[[int, int, Tensor], Tensor] | None = None


@dataclass
class StackCall:
    """One call of a fused stack kernel, run layer by layer."""

    kind: str
    weights: Sequence[Tensor]
    has_biases: bool
    bidirectional: bool
    batch_first: bool
    batch_sizes: Tensor | None
    has_projection: bool
    owner: object  # the module whose forward issued the call, when it was an nn.RNNBase's
    unsorted_indices: Tensor | None  # PackedSequence order to undo, read from that forward
    layers: list[LayerRun] = field(default_factory=list)
    #: the stack's input ``x`` as the kernel received it (packed: its data)
    input: Tensor | None = None
    #: the initial and returned states as the kernel saw them (h[, c]), for chaining calls
    state_in: tuple[Tensor, ...] = ()
    state_out: tuple[Tensor, ...] = ()


@dataclass
class CellCall:
    """One call of a cell kernel: one timestep."""

    kind: str
    input: Tensor  # (N, I)
    h_prev: Tensor  # (N, H)
    c_prev: Tensor | None
    h: Tensor
    c: Tensor | None
    weights: tuple[Tensor, Tensor, Tensor | None, Tensor | None]
    owner: object


class Sink(Protocol):
    """A recorder, as the kernel wrappers see it.

    A sink that also writes (an intervention) has two more methods, found by name:
    ``run_layer(call: LayerCall)`` returns the kernel's result for that layer run edited (or
    None to let the wrapper run it), and ``edit_cell(kind, args, result, owner)`` returns the
    cell kernel's result to hand back instead of ``result``.
    """

    def watches(self, weight: Tensor, owner: object) -> bool: ...

    def wants_inputs(self) -> bool: ...

    def on_stack(self, call: StackCall) -> None: ...

    def on_cell(self, call: CellCall) -> None: ...

    def on_error(self, weight: Tensor, owner: object, error: BaseException) -> None: ...


@dataclass
class LayerCall:
    """Layer ``index`` of a fused stack call, about to run: what an editing sink receives.

    ``run()`` is the call the wrapper makes when no editor takes the layer.
    """

    original: Callable[..., Any]
    kind: str
    index: int
    input: Tensor
    batch_sizes: Tensor | None
    state: Any  # h0 (D, N, H_out), or (h0, c0) for an LSTM
    weights: list[Tensor]
    has_biases: bool
    train: bool
    bidirectional: bool
    batch_first: bool
    stack_weight: Tensor  # the stack's first weight: identifies the module
    owner: object
    unsorted_indices: Tensor | None
    c_edit: Callable[[int, int, Tensor], Tensor] | None = None  # see LayerRun.c_edit

    def run(self) -> Any:
        """This one layer through the original kernel (inter-layer dropout is the caller's)."""
        if self.batch_sizes is not None:
            return self.original(self.input, self.batch_sizes, self.state, self.weights,
                                 self.has_biases, 1, 0.0, self.train, self.bidirectional)
        return self.original(self.input, self.state, self.weights, self.has_biases, 1, 0.0,
                             self.train, self.bidirectional, self.batch_first)
