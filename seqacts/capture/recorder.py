"""Recording: the root-call boundaries, the kernel sink, and per-group chains of calls.

Nothing is stored on the user's model: the root model's forward calls (and the ``modules=``
outputs) are seen through torch's global module hooks, filtered by module identity, and the
kernels through :mod:`seqacts.kernels`; both are removed when the block exits.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from torch.nn.modules import module as torch_module
from torch.nn.utils.rnn import PackedSequence

from ..errors import RecordingError, RecordingWarning
from ..options import Options
from ..schema import base_kind
from . import kernels
from .assembly import Block, build_block, build_dataset
from .call_labels import Restore, check_labels
from .chains import End, Linker, lay_out, split_messages
from .declared import RECEIVED, declared_layers, received, step_splits, steps_message
from .diagnose import report_problems
from .discovery import by_first_weight, recurrent_layers, select_layers, select_modules
from .module_rows import Flow, place_outputs, unplaced_message
from .records import LayerRecord, cell_internals, resolve_internals, stack_internals
from .specs import LayerSpec, nonlinearity

__all__ = ["Recorder", "record"]


@dataclass
class _Group:
    """Everything recorded during one forward call of the root model (or outside any)."""

    linker: Linker = field(default_factory=Linker)
    outputs: dict[str, list[Tensor]] = field(default_factory=dict)
    positions: dict[str, list[int]] = field(default_factory=dict)  # kernel calls before each
    trace: list[tuple[str, int]] = field(default_factory=list)  # kernel calls: label, chain
    flow: Flow = field(default_factory=Flow)  # storages of the trace's and the outputs' calls
    labels: dict[str, Any] = field(default_factory=dict)  # Recorder.label's when it started


class Recorder:
    """Records every selected recurrent layer while active; see :func:`record`."""

    def __init__(self, model: nn.Module, options: Options | None = None,
                 labels: Mapping[str, Any] | None = None) -> None:
        options = Options() if options is None else options
        self._labels = check_labels(labels or {})
        self.model = model
        self.options = options
        selected = select_layers(model, options.layers)
        self.specs: list[LayerSpec] = [s for _, specs in selected for s in specs]
        self.internals: tuple[str, ...] = resolve_internals(
            options.internals,
            {base_kind(s.kind, nonlinearity(m)) for m, specs in selected for s in specs},
        )
        self.time = options.time
        self.declared = declared_layers(model, options.chain, self.specs)
        declared_kinds = {s.kind for s in self.specs if s.label in self.declared}
        self._received: tuple[str, ...] = () if not self.declared else (
            RECEIVED if declared_kinds & {"LSTM", "LSTMCell"} else RECEIVED[:1])
        self._watched = list(selected)
        self._by_module = {id(m): (m, specs) for m, specs in selected}
        self._recurrent = {id(m) for m, _ in recurrent_layers(model)}
        # a model that is itself one RNN or cell: its calls are the kernel calls, and a loop
        # over them (state passed on) must chain, so its calls group like calls made outside
        self._root_groups = id(model) not in self._recurrent
        self._by_weight: dict[int, tuple[nn.Module, list[LayerSpec]]] = {}
        self._outputs = {id(m): (name, m) for name, m in select_modules(model, options.modules)}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._blocks: list[Block] = []
        self._failures: dict[str, list[str]] = {}
        self._group: _Group | None = None
        self._ends: dict[str, list[End]] = {}  # each layer's chain ends in its latest group
        self._splits: dict[str, dict[str, list[int]]] = {}  # label -> reason -> dataset calls
        self._steps: dict[str, list[int]] = {}  # label -> dataset calls splitting a step loop
        self._calls: dict[str, int] = {}  # each layer's calls in the blocks so far
        self._unplaced: list[str] = []  # module outputs' calls left NaN, one message each
        self._groups = 0  # groups closed so far: the next block's model_call
        self._depth = 0
        self._active = False

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        if self._active:
            raise RecordingError("this recorder is already active; use a new record() block")
        try:
            self._add_hooks()
            self._index_weights()
            kernels.install(self)
            self._active = True
        except BaseException:
            self._remove_hooks()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._remove_hooks()
        finally:
            kernels.uninstall(self)
            self._active = False
            self._depth = 0
            if exc[0] is None:
                self._close_group()
            else:
                self._group = None

    def _add_hooks(self) -> None:
        # global hooks: nothing on the model, so copies and pickles made inside the block are clean
        self._handles.append(torch_module.register_module_forward_pre_hook(self._pre_hook))
        self._handles.append(
            torch_module.register_module_forward_hook(self._post_hook, always_call=True))

    def _pre_hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if module is self.model and self._root_groups and (
                torch._C._current_graph_task_id() == -1):
            self._root_pre(module, args)

    def _post_hook(self, module: nn.Module, args: tuple[Any, ...], result: Any) -> None:
        if torch._C._current_graph_task_id() != -1:
            return  # autograd recomputing a forward during backward (checkpointing)
        hit = self._outputs.get(id(module))
        if hit is not None and hit[1] is module:
            self._record_output(hit[0], args, result)
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
            self._group = self._new_group()
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
        if not tensors:
            return
        group = self._current_group()
        inputs = [t for a in args for t in _tensors_of(a)]
        for i, t in enumerate(tensors):
            key = name if len(tensors) == 1 else f"{name}[{i}]"
            group.outputs.setdefault(key, []).append(t.detach().clone())
            group.positions.setdefault(key, []).append(len(group.trace))
            group.flow.add_call(key, inputs, t.detach())

    def _current_group(self) -> _Group:
        if self._group is None:
            self._group = self._new_group()
        return self._group

    def _new_group(self) -> _Group:
        return _Group(linker=Linker(self._ends, self.declared), labels=dict(self._labels))

    def _close_group(self) -> None:
        group, self._group = self._group, None
        if group is None or (not group.linker.chains and not group.outputs):
            return
        linker = group.linker
        self._ends = {**self._ends, **linker.ends()}
        try:
            layout = lay_out([s.label for s in self.specs], linker)
            linker.release()
            outputs, unplaced = place_outputs(layout, group.trace, group.outputs, group.positions,
                                              group.flow)
            block = build_block(self.specs, layout, outputs, self.internals + self._received)
            block.model_call, block.labels = self._groups, group.labels
            self._groups += 1
            if unplaced:
                first = sum(b.n_samples for b in self._blocks)
                self._unplaced += unplaced_message(unplaced, len(self._blocks), first,
                                                   first + block.n_samples - 1)
            self._blocks.append(block)
            for label, splits in linker.splits.items():
                seen = self._calls.get(label, 0)
                for split in splits:
                    self._splits.setdefault(label, {}).setdefault(split.reason, []).append(
                        seen + split.call)
            for label, calls in step_splits(linker).items():
                seen = self._calls.get(label, 0)
                self._steps.setdefault(label, []).extend(seen + c for c in calls)
            for label, n in linker.n_calls.items():
                self._calls[label] = self._calls.get(label, 0) + n
        except Exception as error:  # never break the user's forward: report it with the dataset
            self._failures.setdefault("(assembly)", []).append(f"{type(error).__name__}: {error}")

    # -- labels ------------------------------------------------------------------------------
    def label(self, **labels: Any) -> AbstractContextManager[Recorder]:
        """Label the ``model(...)`` calls recorded from now on (``phase="val", epoch=3``).

        Each label becomes a coordinate along ``sample`` holding, per sample, the value in
        force when its ``model(...)`` call started; samples recorded without it get ``""``
        (str), -1 (int) or NaN (float). The labels add to (and replace by name) those in force;
        ``None`` removes one. Used as a context manager, the labels in force before are
        restored when the ``with`` block exits.

        Parameters
        ----------
        **labels : str, bool, int or float
            Names that are not the dataset's dims, coordinates or variables.

        Returns
        -------
        context manager
            Entering it does nothing more; exiting restores the labels in force before.
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
        return self._resolve(weight, owner) is not None

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
            self._failures.setdefault(label, []).append(f"{type(error).__name__}: {error}")

    def on_stack(self, call: kernels.StackCall) -> None:
        hit = self._resolve(call.weights[0], call.owner)
        if hit is None or call.layers[0].output.numel() == 0:  # 0 samples: nothing to record
            return
        _, specs = hit
        unsorted = call.unsorted_indices
        group = self._current_group()
        last = len(call.layers) - 1
        with _no_autocast(call.weights[0].device.type):
            records = [stack_internals(call, spec.index, unsorted, self.internals,
                                       escapes=spec.index == last) for spec in specs]
        for spec, rec in zip(specs, records, strict=True):
            self._add(group, spec.label, rec, call.input, call.layers[-1].output)

    def on_cell(self, call: kernels.CellCall) -> None:
        hit = self._resolve(call.weights[0], call.owner)
        if hit is None or call.h.numel() == 0:  # 0 samples: nothing to record
            return
        _, specs = hit
        with _no_autocast(call.h.device.type):
            rec = cell_internals(call, self.internals)
        self._add(self._current_group(), specs[0].label, rec, call.input, call.h)

    def _add(self, group: _Group, label: str, rec: LayerRecord, x: Tensor | None,
             out: Tensor) -> None:
        if label in self.declared:  # the state it received, kept before linking drops it
            rec.extra.update(received(rec))
        chain = group.linker.add(label, rec)
        if self._outputs:  # the order of kernel and module calls, and their data, place outputs
            group.trace.append((label, chain))
            group.flow.add_kernel(x, out.detach())

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
            chain's rows provably hold them (:mod:`seqacts.capture.module_rows`).
        """
        if self._active and self._depth == 0:
            self._close_group()  # cell calls made outside any root forward
        if not self._blocks:
            failed = "; ".join(f"{k}: {v[0]}" for k, v in self._failures.items())
            if failed:
                raise RecordingError(f"nothing was recorded: recording failed ({failed})")
            raise RecordingError(
                "nothing was recorded: run the model (model(x)) inside the `with "
                "seqacts.record(model) as rec:` block before calling rec.to_dataset(), and check "
                f"that its forward reaches the selected layers ({', '.join(s.label for s in self.specs)})"
            )
        ds = build_dataset(self.specs, self._blocks, self.internals, self.model, self.time)
        notes = [b.note for b in self._blocks if b.note]
        calls = np.zeros(len(self.specs), dtype=np.int64)
        for block in self._blocks:
            if block.n_calls is not None:
                calls += block.n_calls
        unused = [s.label for s, n in zip(self.specs, calls, strict=True)
                  if n == 0 and s.label not in self._failures]
        report_problems(ds, notes, unused, self._failures)
        steps = steps_message(self._steps)
        for message in [*split_messages(self._splits), *([steps] if steps else []),
                        *self._unplaced]:
            warnings.warn(message, RecordingWarning, stacklevel=2)
        return ds

    def pop_dataset(self) -> xr.Dataset:
        """Like :meth:`to_dataset`, then forget what was recorded (bounded memory when streaming)."""
        ds = self.to_dataset()
        self._blocks.clear()
        self._failures.clear()
        self._splits.clear()
        self._steps.clear()
        self._calls.clear()
        self._unplaced.clear()
        return ds


def _no_autocast(device_type: str) -> AbstractContextManager[Any]:
    """Internals are computed in the dtype the kernel ran in, not re-cast by an active autocast."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return nullcontext()


def _tensors_of(result: Any) -> list[Tensor]:
    if isinstance(result, Tensor):
        return [result]
    if isinstance(result, PackedSequence):
        return [result.data]
    if isinstance(result, (tuple, list)):
        return [t for t in result if isinstance(t, Tensor)]
    return []


def record(
    model: nn.Module,
    *,
    layers: str | Iterable[str] | None = None,
    internals: bool | Collection[str] = False,
    time: Sequence[Any] | None = None,
    modules: str | Iterable[str] | None = None,
    chain: str | Iterable[str] | Mapping[str, str] | None = None,
    labels: Mapping[str, Any] | None = None,
) -> Recorder:
    """Record every recurrent layer of ``model`` while the ``with`` block runs.

    Parameters
    ----------
    model : torch.nn.Module
        The root model; each of its forward calls inside the block appends samples, and so do
        calls made outside it (``model.loss(x)``, a submodule called directly). How calls
        become samples is the README's "How calls become samples": calls passed the state the
        previous call returned continue it along ``time``; any other call starts new samples.
    layers : str or list of str, optional
        Layer labels, module paths (all layers of that module) or fnmatch patterns
        (``"encoder.*"``); default every recurrent layer (see :func:`seqacts.layers`).
    internals : bool or list of str, default False
        ``True`` adds cell states and gates per timestep; a list picks variables
        (e.g. ``["c", "forget_gate"]``).
    time : sequence, optional
        Labels for the ``time`` coordinate (e.g. a ``pandas.DatetimeIndex``).
    modules : str or list of str, optional
        Paths or patterns of other modules whose outputs to record as well.
    chain : str, list of str or dict, optional
        Declared continuation: layers (labels, module paths or patterns, or a dict
        ``{"cell": "steps"}``) whose calls within one ``model(...)`` call with the same batch
        size are consecutive steps of the same rows, whatever state they receive (a decay,
        zoneout or a norm applied to the state between steps). The state each call received
        is recorded as ``h_in`` (and ``c_in``), dims like ``h``.
    labels : dict, optional
        Labels (``{"phase": "train", "epoch": 0}``) for the ``model(...)`` calls recorded,
        each a coordinate along ``sample``; change them with :meth:`Recorder.label`. Every
        sample also carries ``model_call``, the number of the call it came from.

    Returns
    -------
    Recorder
        A context manager; ``rec.to_dataset()`` returns the ``xarray.Dataset``.
    """
    return Recorder(model, Options(layers=layers, internals=internals, time=time, modules=modules,
                                   chain=chain), labels=labels)
