"""Recording: the root-call boundaries, the kernel sink, and per-group chains of calls.

Nothing is stored on the user's model: the root model's forward calls (and the ``modules=``
outputs) are seen through torch's global module hooks, filtered by module identity, and the
kernels through :mod:`seqacts.capture.kernels` (Python cells through their own calls,
:mod:`seqacts.capture.cells`); both are removed when the block exits.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import xarray as xr
from torch import Tensor, nn
from torch.nn.modules import module as torch_module
from torch.nn.utils.rnn import PackedSequence

from ..errors import EditError, RecordingError
from ..kinds import has_cell_state
from ..options import RecordingOptions
from ..schema import base_kind
from . import kernels
from .call_labels import Restore, check_labels
from .calls import CellCall, StackCall
from .cells import CellWatch
from .declared import RECEIVED, declared_layers, received
from .discovery import (
    by_first_weight,
    recurrent_layers,
    select_cells,
    select_layers,
    select_modules,
)
from .editing import applying
from .groups import Group, Recording
from .records import LayerRecord, cell_internals, resolve_internals, stack_internals
from .specs import LayerSpec, nonlinearity

__all__ = ["Recorder"]


class Recorder:
    """Records every selected recurrent layer while active; see :func:`record`."""

    def __init__(self, model: nn.Module, options: RecordingOptions | None = None,
                 labels: Mapping[str, Any] | None = None) -> None:
        options = RecordingOptions() if options is None else options
        self._labels = check_labels(labels or {})
        self.model = model
        self.options = options
        cells = select_cells(model, options.cells)
        hooked_ids = {id(m) for m, _ in cells}
        # without any recurrent module, modules= and cells= still record (said in a warning)
        found = recurrent_layers(model, required=not (options.modules or cells))
        # layers= may name cells= too; cells= are recorded in any case, never by their kernel
        selected = [(m, specs) for m, specs in select_layers(model, options.layers,
                                                             [*found, *cells])
                    if id(m) not in hooked_ids]
        order = {id(m): i for i, m in enumerate(model.modules())}
        selected = sorted([*selected, *cells], key=lambda hit: order[id(hit[0])])
        hooked = [(m, s) for m, specs in selected for s in specs if s.hooked]
        watched = [(m, specs) for m, specs in selected if not specs[0].hooked]
        _check_cell_edits(options.edits, cells, found)
        self._editing = applying(model, options.edits)  # checked now, entered with the block
        self.specs: list[LayerSpec] = [s for _, specs in selected for s in specs]
        self.internals: tuple[str, ...] = resolve_internals(
            options.internals,
            {base_kind(s.kind, nonlinearity(m)) for m, specs in selected for s in specs},
        )
        self.time = options.time
        self.declared = declared_layers(model, options.chain, self.specs)
        received_vars = () if not self.declared else RECEIVED if any(
            has_cell_state(s.kind) for s in self.specs if s.label in self.declared) else RECEIVED[:1]
        self._watched = watched
        self._by_module = {id(m): (m, specs) for m, specs in watched}
        self._recurrent = {id(m) for m, _ in found} | hooked_ids
        # a model that is itself one RNN or cell: its calls are the kernel calls, and a loop
        # over them (state passed on) must chain, so its calls group like calls made outside
        self._root_groups = id(model) not in self._recurrent
        self._by_weight: dict[int, tuple[nn.Module, list[LayerSpec]]] = {}
        self._outputs = {id(m): (name, m) for name, m in select_modules(model, options.modules)}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._recording = Recording(self.specs, self.internals, self.declared, received_vars)
        self._cells = CellWatch(self.specs, hooked, self._by_module)
        self._group: Group | None = None
        self._depth = 0
        self._active = False

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        if self._active:
            raise RecordingError("this recorder is already active; use a new record() block")
        self._editing.__enter__()
        try:
            self._add_hooks()
            self._index_weights()
            kernels.install(self)
            self._active = True
        except BaseException:
            self._remove_hooks()
            self._editing.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._remove_hooks()
        finally:
            try:
                kernels.uninstall(self)
            finally:
                self._editing.__exit__(*exc)
            self._active = False
            self._depth = 0
            if exc[0] is None:
                self._close_group()
            else:
                self._group = None

    def _add_hooks(self) -> None:
        # global hooks: nothing on the model, so copies and pickles made inside the block are clean
        self._handles.append(torch_module.register_module_forward_pre_hook(self._pre_hook))
        self._handles.append(torch_module.register_module_forward_hook(
            self._post_hook, with_kwargs=True, always_call=True))

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if torch._C._current_graph_task_id() != -1:
            return  # autograd recomputing a forward during backward (checkpointing)
        if module is self.model and self._root_groups:
            self._root_pre(module, args)
        self._cells.entered(module)

    def _post_hook(self, module: nn.Module, args: tuple[Any, ...], *rest: Any) -> None:
        # (kwargs, result); torch calls an always_call hook with (result) alone after the
        # forward raised, with_kwargs or not
        kwargs, result = rest if len(rest) == 2 else ({}, rest[0])
        if torch._C._current_graph_task_id() != -1:
            return  # autograd recomputing a forward during backward (checkpointing)
        raised = result is None and sys.exc_info()[0] is not None
        if not raised:
            hit = self._cells.returned(module, args, kwargs, result, self.internals)
            if hit is not None:
                self._add(self._current_group(), hit[0], hit[1], _first_tensor(args),
                          hit[1].h[:, 0, 0])
        out = self._outputs.get(id(module))
        if out is not None and out[1] is module:
            self._record_output(out[0], args, result)
        # after the output: the root's own output must land before _root_post closes the group
        if module is self.model and self._root_groups:
            self._root_post(module, args, result)

    def _remove_hooks(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def _index_weights(self) -> None:
        self._by_weight = by_first_weight(self._watched)

    # -- root forward boundaries ------------------------------------------------------------
    def _root_pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._depth == 0:
            self._close_group()  # calls made outside a root forward form their own group
            self._group = self._recording.new_group(self._labels)
            self._index_weights()  # weights may have been replaced since __enter__
        self._depth += 1

    def _root_post(self, module: nn.Module, args: tuple[Any, ...], result: Any) -> None:
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            if result is None and sys.exc_info()[0] is not None:
                self._group = None  # the forward raised: drop its partial record
            else:
                self._close_group()

    def _record_output(self, name: str, args: tuple[Any, ...], result: Any) -> None:
        tensors = _tensors_of(result)
        if tensors:
            self._current_group().add_output(name, [t for a in args for t in _tensors_of(a)],
                                             tensors)

    def _current_group(self) -> Group:
        if self._group is None:
            self._group = self._recording.new_group(self._labels)
        return self._group

    def _close_group(self) -> None:
        group, self._group = self._group, None
        self._recording.close(group)

    # -- labels ------------------------------------------------------------------------------
    def label(self, **labels: Any) -> AbstractContextManager[Recorder]:
        """Label the ``model(...)`` calls recorded from now on (``phase="val", epoch=3``).

        Each label (str, bool, int or float; not a name of the schema) becomes a coordinate
        along ``sample``: per sample, the value in force when its ``model(...)`` call started
        (``""``, -1 or NaN without it). Labels add to and replace those in force by name;
        ``None`` removes one. Returns a context manager whose exit restores the labels before.
        """
        before = dict(self._labels)
        updated = {k: v for k, v in self._labels.items() if k not in labels}
        updated.update(check_labels({k: v for k, v in labels.items() if v is not None}))
        self._set_labels(updated)
        return Restore(self, lambda: self._set_labels(before))

    def _set_labels(self, labels: dict[str, Any]) -> None:
        if self._depth == 0:  # calls made outside any model(...) so far keep the old labels
            self._close_group()
        self._labels = labels

    @property
    def labels(self) -> dict[str, Any]:
        """The labels in force (a copy); see :meth:`label`."""
        return dict(self._labels)

    # -- kernels.Sink ------------------------------------------------------------------------
    def watches(self, weight: Tensor, owner: object) -> bool:
        hit = self._resolve(weight, owner)
        if hit is not None:
            self._cells.reached(hit[0])
        return hit is not None

    def wants_inputs(self) -> bool:
        return bool(self.internals)

    def _resolve(self, weight: Tensor, owner: object) -> tuple[nn.Module, list[LayerSpec]] | None:
        """The watched module that made the call: the calling module itself when it is one of
        the model's recurrent modules (tied weights, parametrizations), else by weight."""
        if id(owner) in self._recurrent:
            hit = self._by_module.get(id(owner))
            return hit if hit is not None and hit[0] is owner else None
        return self._by_weight.get(id(weight))

    def on_error(self, weight: Tensor, owner: object, error: BaseException) -> None:
        hit = self._resolve(weight, owner)
        labels = [s.label for s in hit[1]] if hit is not None else ["(unknown layer)"]
        for label in labels:
            self._recording.fail(label, error)

    def on_stack(self, call: StackCall) -> None:
        hit = self._resolve(call.weights[0], call.owner)
        if hit is None:
            return
        _, specs = hit
        unsorted = call.unsorted_indices
        group = self._current_group()
        with _no_autocast(call.weights[0].device.type):
            records = [stack_internals(call, spec.index, unsorted, self.internals)
                       for spec in specs]
        for spec, rec in zip(specs, records, strict=True):
            self._add(group, spec.label, rec, call.input, call.layers[-1].output)

    def on_cell(self, call: CellCall) -> None:
        hit = self._resolve(call.weights[0], call.owner)
        if hit is None:
            return
        _, specs = hit
        with _no_autocast(call.h.device.type):
            rec = cell_internals(call, self.internals)
        self._add(self._current_group(), specs[0].label, rec, call.input, call.h)

    def _add(self, group: Group, label: str, rec: LayerRecord, x: Tensor | None,
             out: Tensor) -> None:
        if label in self.declared:  # the state it received, kept before linking drops it
            rec.extra.update(received(rec))
        # the order of layer and module calls, and their data, place the modules= outputs
        group.add(label, rec, x, out, trace=bool(self._outputs))

    # -- results -------------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """Assemble everything recorded so far into a labeled dataset.

        Returns
        -------
        xarray.Dataset
            Dims ``sample, layer, direction, time, unit``; see the README's schema.

        Warns
        -----
        RecordingWarning
            Once per kind of problem: layers whose rows could not be aligned as the same
            samples, non-finite states, selected layers that saw no call, failed bookkeeping,
            and calls that started new samples although their initial state was partly a
            state an earlier call returned (see :func:`seqacts.capture.chains.split_messages`);
            once per module output and group whose calls were left NaN because no single
            chain's rows provably hold them (:mod:`seqacts.capture.module_rows`); once per
            torch module whose forward returned without running its kernel, and when the
            model has no recurrent layer (only ``modules=`` outputs recorded).
        """
        if self._active and self._depth == 0:
            self._close_group()  # cell calls made outside any root forward
        recording = self._recording
        bypassed = dict(self._cells.notes)
        if not recording.blocks:
            failed = "; ".join(f"{k}: {v[0]}" for k, v in recording.failures.items())
            if failed:
                raise RecordingError(f"nothing was recorded: recording failed ({failed})")
            if bypassed:
                raise RecordingError("nothing was recorded: " + "; ".join(bypassed.values()))
            raise RecordingError(
                "nothing was recorded: run the model (model(x)) inside the `with "
                "seqacts.record(model) as rec:` block before calling rec.to_dataset(), and check "
                f"that its forward reaches the selected layers ({', '.join(s.label for s in self.specs)})"
            )
        recording.notes = list(bypassed.values())
        if not self.specs:
            recording.notes.append(
                f"seqacts: {type(self.model).__name__} has no recurrent layer that seqacts "
                "records (no nn.RNN/LSTM/GRU or torch cell, no cells=): the dataset holds only the "
                "modules= outputs; name a per-step cell with cells={'<path>': 'h'} to record it")
        excused = [s.label for s in self.specs if s.module_path in bypassed]
        return recording.dataset(self.model, self.time, excused)


def _check_cell_edits(edits: tuple[Any, ...], cells: list[tuple[nn.Module, list[LayerSpec]]],
                      found: list[tuple[nn.Module, list[LayerSpec]]]) -> None:
    """Refuse an edit of a ``cells=`` layer that no kernel runs (a torch cell named in
    ``cells=`` is still edited in its kernel)."""
    kernel = {s.label for _, specs in found for s in specs}
    labels = {s.label for _, specs in cells for s in specs} - kernel
    hit = next((e.layer for e in edits if getattr(e, "layer", None) in labels), None)
    if hit is not None:
        raise EditError(
            f"{hit} is a Python cell (cells=), recorded from the state it returns: seqacts edits "
            "states inside torch's recurrent kernels only; edit the cell's own code, or its "
            "input or output")


def _no_autocast(device_type: str) -> AbstractContextManager[Any]:
    """Internals are computed in the dtype the kernel ran in, not re-cast by an active autocast."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()


def _first_tensor(args: tuple[Any, ...]) -> Tensor | None:
    return args[0] if args and isinstance(args[0], Tensor) else None


def _tensors_of(result: Any) -> list[Tensor]:
    if isinstance(result, Tensor):
        return [result]
    if isinstance(result, PackedSequence):
        return [result.data]
    if isinstance(result, (tuple, list)):
        return [t for t in result if isinstance(t, Tensor)]
    return []
