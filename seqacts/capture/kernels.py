"""Intercept PyTorch's recurrent kernels and run fused stacks one layer at a time.

``nn.RNN/LSTM/GRU`` call ``torch._VF.<kind>`` once for the whole stack, which returns only the
top layer's sequence. While a recorder is active, the wrapper installed here re-issues that call
as one call of the *same* kernel per layer (re-applying the inter-layer dropout exactly as ATen
does), so every layer's sequence is seen and the model receives the same values. Cell kernels
(``torch._VF.lstm_cell`` ...) are observed as they are. Calls are matched to recorders by the
identity of the weights they receive, so they are seen wherever they run.

Two things never reach a recorder: calls that autograd makes while it recomputes a forward
during backward (``torch.utils.checkpoint``), and failures of seqacts' own bookkeeping, which
are handed to the recorder (``Sink.on_error``) while the model receives the kernel's result.

A sink may also edit (``seqacts.interventions``, see :class:`~seqacts.capture.calls.Sink`): it
may run a stack's layer itself (edited) in place of the per-layer call, and replace a cell
kernel's returned state. The records of calls are in :mod:`seqacts.capture.calls`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..kinds import has_cell_state
from ..schema import CELL_KERNELS, STACK_KERNELS, weights_per_direction
from . import workspace
from .calls import CellCall, LayerCall, LayerRun, Sink, StackCall

__all__ = ["install", "uninstall"]

_MISSING = object()


_LOCK = threading.RLock()
_SINKS: list[Sink] = []
_SAVED: dict[str, object] = {}


def install(sink: Sink) -> None:
    """Activate ``sink``; the first active sink patches ``torch._VF``."""
    with _LOCK:
        if not _SINKS:
            vf = torch._VF
            for name in (*STACK_KERNELS.values(), *CELL_KERNELS.values()):
                _SAVED[name] = vf.__dict__.get(name, _MISSING)
                original = getattr(vf, name)
                wrapper = _stack_wrapper(name, original) if name in STACK_KERNELS.values() else (
                    _cell_wrapper(name, original)
                )
                setattr(vf, name, wrapper)
        _SINKS.append(sink)


def uninstall(sink: Sink) -> None:
    """Deactivate ``sink``; the last one out restores ``torch._VF`` exactly as it was."""
    with _LOCK:
        if sink in _SINKS:
            _SINKS.remove(sink)
        if not _SINKS and _SAVED:
            vf = torch._VF
            for name, saved in _SAVED.items():
                if saved is _MISSING:
                    vf.__dict__.pop(name, None)
                else:
                    setattr(vf, name, saved)
            _SAVED.clear()


def _sinks_for(weight: Tensor, owner: object) -> list[Sink]:
    # autograd recomputing a forward during backward (checkpointing): not recorded again, but
    # still edited, so that the recomputation is the forward whose gradients are taken
    recomputing = torch._C._current_graph_task_id() != -1
    with _LOCK:
        return [s for s in _SINKS
                if (not recomputing or _is_editor(s)) and s.watches(weight, owner)]


def _report(sinks: list[Sink], weight: Tensor, owner: object, error: BaseException) -> None:
    for sink in sinks:
        try:
            sink.on_error(weight, owner, error)
        except Exception:  # pragma: no cover - nothing more can be done without breaking the model
            pass


def _deliver(sinks: list[Sink], method: str, call: Any, weight: Tensor, owner: object) -> None:
    """Hand ``call`` to every sink; a sink's failure is reported to it, never raised."""
    for sink in sinks:
        try:
            getattr(sink, method)(call)
        except Exception as error:
            _report([sink], weight, owner, error)


def _caller_locals(depth: int = 2) -> dict[str, Any]:
    """Locals of the function that called the kernel (``RNNBase.forward`` for a module).

    From there come the module itself (``self``: it identifies the module even when its
    weights are recomputed per call, e.g. by parametrizations) and the ``unsorted_indices``
    of a PackedSequence, which the kernel never sees.
    """
    try:
        return sys._getframe(depth).f_locals
    except ValueError:  # pragma: no cover - no such frame
        return {}


_KIND_OF_KERNEL = {v: k for k, v in (*STACK_KERNELS.items(), *CELL_KERNELS.items())}


def _stack_wrapper(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    kind = _KIND_OF_KERNEL[name]

    def recorded_stack_kernel(*args: Any, **kwargs: Any) -> Any:
        if kwargs or len(args) != 9:
            return original(*args, **kwargs)
        packed = isinstance(args[1], Tensor) and args[1].dim() == 1 and not args[1].is_floating_point()
        params = args[3] if packed else args[2]
        if not params:
            return original(*args)
        caller = _caller_locals()
        sinks = _sinks_for(params[0], caller.get("self"))
        if not sinks:
            return original(*args)
        unsorted = caller.get("unsorted_indices") if packed else None
        if not isinstance(unsorted, Tensor):
            unsorted = None
        owner = caller.get("self")
        try:
            call, result = _run_layerwise(original, kind, args, packed, sinks, owner, unsorted)
        except Exception as error:  # seqacts' own failure: the model still gets its result
            if any(_is_editor(s) for s in sinks):
                raise  # never hand back an unedited result in place of an edited one
            _report(sinks, params[0], owner, error)
            return original(*args)
        _deliver(sinks, "on_stack", call, params[0], owner)
        return result

    recorded_stack_kernel.__wrapped__ = original  # type: ignore[attr-defined]
    return recorded_stack_kernel


@dataclass
class _StackArgs:
    """The positional arguments of a fused stack kernel (``torch._VF.lstm`` and kin)."""

    x: Tensor
    batch_sizes: Tensor | None
    hx: Any  # h0 (L*D, N, H_out), or (h0, c0) for an LSTM
    params: Sequence[Tensor]
    has_biases: bool
    num_layers: int
    dropout: float
    train: bool
    bidirectional: bool
    batch_first: bool

    @classmethod
    def parse(cls, args: tuple[Any, ...], packed: bool) -> _StackArgs:
        """Name the arguments of a padded or a packed (``batch_sizes`` second) call."""
        if packed:
            x, batch_sizes, hx, params, has_biases, num_layers, dropout, train, bidirectional = args
            batch_first = False
        else:
            x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first = args
            batch_sizes = None
        return cls(x, batch_sizes, hx, params, bool(has_biases), int(num_layers), float(dropout),
                   bool(train), bool(bidirectional), bool(batch_first))  # fmt: skip

    def layer_call(
        self, original: Callable[..., Any], kind: str, k: int, layer_input: Tensor,
        owner: object, unsorted: Tensor | None,
    ) -> LayerCall:
        """Layer ``k`` of this stack as a one-layer call of the same kernel."""
        n_dir = 2 if self.bidirectional else 1
        per_layer = len(self.params) // self.num_layers
        layers = slice(k * n_dir, (k + 1) * n_dir)
        state = (self.hx[0][layers], self.hx[1][layers]) if has_cell_state(kind) else self.hx[layers]
        weights = list(self.params[k * per_layer : (k + 1) * per_layer])
        return LayerCall(original, kind, k, layer_input, self.batch_sizes, state, weights,
                         self.has_biases, self.train, self.bidirectional, self.batch_first,
                         self.params[0], owner, unsorted)  # fmt: skip


def _run_layerwise(
    original: Callable[..., Any],
    kind: str,
    args: tuple[Any, ...],
    packed: bool,
    sinks: list[Sink],
    owner: object,
    unsorted: Tensor | None,
) -> tuple[StackCall, Any]:
    """Run a fused stack call one layer at a time; its record and the kernel's result."""
    a = _StackArgs.parse(args, packed)
    is_lstm = has_cell_state(kind)
    per_direction = len(a.params) // (a.num_layers * (2 if a.bidirectional else 1))
    call = StackCall(
        kind=kind,
        weights=a.params,
        has_biases=a.has_biases,
        bidirectional=a.bidirectional,
        batch_first=a.batch_first,
        batch_sizes=a.batch_sizes,
        has_projection=is_lstm and per_direction == weights_per_direction(a.has_biases, True),
        owner=owner,
        unsorted_indices=unsorted,
        input=a.x,
    )
    keep_inputs = any(s.wants_inputs() for s in sinks)
    layer_input, results = a.x, []
    for k in range(a.num_layers):
        layer_call = a.layer_call(original, kind, k, layer_input, owner, unsorted)
        res, gates = _run_layer(layer_call, sinks, keep_inputs and not packed)
        results.append(res)
        call.layers.append(_layer_run(layer_call, res, gates, keep_inputs))
        # ATen applies the same op between layers: at::dropout(output, p, train=true).
        if a.dropout != 0 and a.train and k < a.num_layers - 1:
            layer_input = torch.dropout(res[0], a.dropout, True)
        else:
            layer_input = res[0]
    hidden = torch.cat([res[1] for res in results], 0)
    h_in = a.hx[0] if is_lstm else a.hx
    if is_lstm:
        cell = torch.cat([res[2] for res in results], 0)
        call.state_in = (h_in.detach(), a.hx[1].detach())
        call.state_out = (hidden.detach(), cell.detach())
        return call, (layer_input, hidden, cell)
    call.state_in, call.state_out = (h_in.detach(),), (hidden.detach(),)
    return call, (layer_input, hidden)


def _run_layer(
    layer_call: LayerCall, sinks: list[Sink], workspace_gates: bool
) -> tuple[Any, Sequence[Tensor]]:
    """One layer's kernel result, and the gates of its workspace when kept.

    An active editor may run the layer itself, edited. Otherwise, when internals are wanted
    from an unpacked LSTM layer, the kernel that keeps its gates (its workspace) runs it.
    """
    res = _run_by_editor(sinks, layer_call)
    if res is not None:
        return res, ()
    if has_cell_state(layer_call.kind) and workspace_gates:
        h0, c0 = layer_call.state
        fused = workspace.lstm_layer(layer_call.input, h0, c0, layer_call.weights,
                                     has_biases=layer_call.has_biases, train=layer_call.train,
                                     bidirectional=layer_call.bidirectional,
                                     batch_first=layer_call.batch_first)  # fmt: skip
        if fused is not None:
            return fused
    return layer_call.run(), ()


def _layer_run(
    layer_call: LayerCall, res: Any, gates: Sequence[Tensor], keep_inputs: bool
) -> LayerRun:
    """What the sinks keep of one layer's call: detached inputs, outputs and states."""
    is_lstm = has_cell_state(layer_call.kind)
    h0, c0 = layer_call.state if is_lstm else (layer_call.state, None)
    layer_input = layer_call.input
    return LayerRun(
        input=layer_input.detach() if keep_inputs else layer_input.new_empty(0),
        output=res[0].detach(),
        h0=h0.detach(),
        hn=res[1].detach(),
        c0=c0.detach() if c0 is not None else None,
        cn=res[2].detach() if is_lstm else None,
        weights=[w.detach() for w in layer_call.weights],
        gates=tuple(gates),
        c_edit=layer_call.c_edit,
    )


def _is_editor(sink: Sink) -> bool:
    return callable(getattr(sink, "run_layer", None))


def _run_by_editor(sinks: list[Sink], call: LayerCall) -> Any:
    for sink in sinks:
        run_layer = getattr(sink, "run_layer", None)
        if run_layer is not None:
            result = run_layer(call)
            if result is not None:
                return result
    return None


def _edit_cell(sinks: list[Sink], kind: str, args: tuple[Any, ...], result: Any,
               owner: object) -> Any:
    for sink in sinks:
        edit_cell = getattr(sink, "edit_cell", None)
        if edit_cell is not None:
            result = edit_cell(kind, args, result, owner)
    return result


def _cell_wrapper(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    kind = _KIND_OF_KERNEL[name]

    def recorded_cell_kernel(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if kwargs or len(args) < 4:
            return result
        owner = _caller_locals().get("self")
        sinks = _sinks_for(args[2], owner)
        if not sinks:
            return result
        result = _edit_cell(sinks, kind, args, result, owner)  # interventions hook
        try:
            call = _cell_call(kind, args, result, owner)
        except Exception as error:
            _report(sinks, args[2], owner, error)
            return result
        _deliver(sinks, "on_cell", call, args[2], owner)
        return result

    recorded_cell_kernel.__wrapped__ = original  # type: ignore[attr-defined]
    return recorded_cell_kernel


def _cell_call(kind: str, args: tuple[Any, ...], result: Any, owner: object) -> CellCall:
    x, hx, w_ih, w_hh = args[:4]
    b_ih = args[4] if len(args) > 4 else None
    b_hh = args[5] if len(args) > 5 else None
    if has_cell_state(kind):
        h_prev, c_prev = hx
        h, c = result
    else:
        h_prev, c_prev, h, c = hx, None, result, None
    call = CellCall(
        kind=kind,
        input=x.detach(),
        h_prev=h_prev.detach(),
        c_prev=c_prev.detach() if c_prev is not None else None,
        h=h.detach(),
        c=c.detach() if c is not None else None,
        weights=(w_ih.detach(), w_hh.detach(),
                 b_ih.detach() if b_ih is not None else None,
                 b_hh.detach() if b_hh is not None else None),
        owner=owner,
    )
    return call
