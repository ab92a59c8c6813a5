"""The ``with seqacts.intervene(model, edits):`` block, also what ``edits=`` of a recording runs.

An :class:`Intervention` is a kernel sink that also writes (see ``capture.calls.Sink``): while
active, a fused stack holding an edited layer runs layer by layer, and the edited layer runs
through :func:`~seqacts.interventions.runner.run_edited_layer`; a cell's returned state is
edited at the edited calls. A recorder active at the same time records the edited states; a
recorder given ``edits=`` enters this block itself (:mod:`seqacts.capture.editing`, where this
module registers it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules import module as torch_module

from ..capture import editing, kernels
from ..capture.calls import LayerCall
from ..capture.discovery import by_first_weight, recurrent_layers
from ..capture.modules import is_cell
from ..capture.specs import LayerSpec
from ..errors import EditError, LayerSelectionError
from ..keras import is_keras_model
from ..kinds import has_cell_state
from .edits import Edit, Plan, plan, step_flags
from .runner import WriteOnlySink, apply_plans, output_gate, run_edited_layer

__all__ = ["Intervention", "intervene", "plans_for"]

_ACTIVE_LOCK = threading.Lock()
_ACTIVE: list[Intervention] = []


class Intervention(WriteOnlySink):
    """Applies resolved plans to a model's recurrent layers while active; see :func:`intervene`."""

    def __init__(self, model: nn.Module, plans: dict[str, list[Plan]]) -> None:
        self.model = model
        self.plans = plans
        self._modules = [(m, specs) for m, specs in recurrent_layers(model)
                         if any(s.label in plans for s in specs)]  # fmt: skip
        self._by_weight: dict[int, tuple[nn.Module, list[LayerSpec]]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._calls: dict[str, int] = {}  # cell label -> calls made in this forward
        # edited modules: id -> first label; kernel calls reached per label; open forwards
        self._edited = {id(m): specs[0].label for m, specs in self._modules}
        self._reached: dict[str, int] = {}
        self._open: dict[int, list[int]] = {}
        self._depth = 0
        self._active = False

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> Intervention:
        if self._active:
            raise EditError("this intervention is already active; use a new intervene() block")
        with _ACTIVE_LOCK:
            clash = [label for other in _ACTIVE if other.model is self.model
                     for label in other.plans if label in self.plans]  # fmt: skip
            if clash:
                raise EditError(
                    f"intervene: {', '.join(sorted(set(clash)))} is already edited by an enclosing "
                    "intervene() block; pass all edits of a layer to one block"
                )
            _ACTIVE.append(self)
        try:
            # global hooks filtered by identity: nothing on the model, so a copy or pickle made
            # inside the block (or inside a record(edits=) block) carries no hook
            self._handles.append(torch_module.register_module_forward_pre_hook(self._root_pre))
            self._handles.append(
                torch_module.register_module_forward_hook(self._root_post, always_call=True)
            )
            self._index_weights()
            self._calls.clear()
            kernels.install(self)
            self._active = True
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            kernels.uninstall(self)
        finally:
            self._release()
            self._active = False
            self._depth = 0

    def _release(self) -> None:
        while self._handles:
            self._handles.pop().remove()
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)

    def _index_weights(self) -> None:
        self._by_weight = by_first_weight(self._modules)

    def _root_pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        label = self._edited.get(id(module))
        if label is not None:
            self._open.setdefault(id(module), []).append(self._reached.get(label, 0))
        if module is not self.model:
            return
        if self._depth == 0:
            # cell steps count from 0 in each forward of the root, unless the root is the cell
            # itself: then the caller's loop is the sequence, counted from the block's start
            if not is_cell(self.model):
                self._calls.clear()
            self._index_weights()  # weights may have been replaced since __enter__
        self._depth += 1

    def _root_post(self, module: nn.Module, args: tuple[Any, ...], result: Any) -> None:
        opened = self._open.get(id(module))
        if opened:
            self._check_reached(module, opened.pop(), result)
        if module is not self.model:
            return
        self._depth = max(self._depth - 1, 0)

    def _resolve(self, weight: Tensor, owner: object) -> list[LayerSpec] | None:
        hit = self._by_weight.get(id(weight))
        if hit is not None:
            return hit[1]
        for module, specs in self._modules:
            if module is owner:
                return specs
        return None

    def _check_reached(self, module: nn.Module, before: int, result: Any) -> None:
        """Refuse an edited module whose forward returned without running torch's kernel
        (its own math): its edits would silently not apply."""
        label = self._edited[id(module)]
        if result is None or self._reached.get(label, 0) != before:
            return  # the forward raised, or its kernel ran
        raise EditError(
            f"{label} ({type(module).__name__}) returned without running torch's recurrent "
            "kernel (its forward computes its own steps), so the edits of it cannot be "
            "applied; seqacts edits states inside torch's kernels only: edit the module's own "
            "code, or its input or output")

    # -- kernels.Sink, editing -----------------------------------------------------------------
    def watches(self, weight: Tensor, owner: object) -> bool:
        specs = self._resolve(weight, owner)
        if specs is not None:
            self._reached[specs[0].label] = self._reached.get(specs[0].label, 0) + 1
        return specs is not None

    def run_layer(self, call: LayerCall) -> Any:
        specs = self._resolve(call.stack_weight, call.owner)
        if specs is None or call.index >= len(specs):
            return None
        plans = self.plans.get(specs[call.index].label)
        if not plans:
            return None
        return run_edited_layer(call, plans)

    def edit_cell(self, kind: str, args: tuple[Any, ...], result: Any, owner: object) -> Any:
        specs = self._resolve(args[2], owner)
        if specs is None or specs[0].label not in self.plans:
            return result
        label = specs[0].label
        t = self._calls.get(label, 0)
        self._calls[label] = t + 1
        active = []
        n = (result[0] if has_cell_state(kind) else result).shape[0]
        for p in self.plans[label]:
            flags = step_flags(p.time, t, label)
            p.check_samples(n, flags.unsqueeze(1))
            if bool(flags.any()):
                active.append((p, flags))
        if not active:
            return result
        x, hx, w_ih, w_hh = args[:4]
        b_ih = args[4] if len(args) > 4 else None
        b_hh = args[5] if len(args) > 5 else None
        if has_cell_state(kind):
            h, c = result
            h, c = apply_plans(active, t, None, h, c,
                               lambda: output_gate(x, hx[0], w_ih, w_hh, b_ih, b_hh), None)  # fmt: skip
            return h, c
        h, _ = apply_plans(active, t, None, result, None, lambda: result, None)
        return h


def _edit_list(edits: Edit | Iterable[Edit]) -> list[Edit]:
    items = [edits] if isinstance(edits, Edit) else list(edits)
    bad = [e for e in items if not isinstance(e, Edit)]
    if bad:
        raise EditError(
            f"edits: expected seqacts.ablate(...) or seqacts.patch(...) objects, got "
            f"{type(bad[0]).__name__}"
        )
    return items


def plans_for(model: nn.Module, edits: Edit | Iterable[Edit]) -> dict[str, list[Plan]]:
    """Check each edit against the layer it names; group the resolved plans by layer label."""
    if is_keras_model(model):
        from ..keras.api import interventions_unsupported

        raise interventions_unsupported(model)
    specs = {s.label: s for _, ss in recurrent_layers(model) for s in ss}
    out: dict[str, list[Plan]] = {}
    for edit in _edit_list(edits):
        spec = specs.get(edit.layer)
        if spec is None:
            raise LayerSelectionError(
                f"edit: no layer {edit.layer!r}; available: {', '.join(specs)}"
            )
        out.setdefault(spec.label, []).append(plan(edit, spec))
    return out


def intervene(model: nn.Module, edits: Edit | Iterable[Edit]) -> Intervention:
    """Apply edits to the recurrence of ``model``'s layers while the ``with`` block runs.

    Parameters
    ----------
    model : torch.nn.Module
        The root model; its forward calls inside the block run edited.
    edits : Edit or list of Edit
        Built by :func:`seqacts.ablate` and :func:`seqacts.patch`.

    Returns
    -------
    Intervention
        A context manager. On exit (also on exceptions) the model and ``torch._VF`` are as
        before; grad mode and training mode are never touched. Inside, ``seqacts.record``
        records the edited states.
    """
    return Intervention(model, plans_for(model, edits))


# seqacts.record / extract / extract_to_netcdf / extract_distributed apply edits= through this
editing.register(Edit, intervene)
