"""Recording: hooks on the model, the kernel sink, and per-forward groups of segments."""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import xarray as xr
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import kernels
from .assemble import Block, LayerRecord, build_block, build_dataset
from .discover import select_layers, select_modules
from .errors import RecordingError
from .internals import cell_internals, resolve_internals, stack_internals
from .specs import LayerSpec, base_kind

__all__ = ["Recorder", "record"]


@dataclass
class _Group:
    """Everything recorded during one forward call of the root model."""

    layers: dict[str, list[LayerRecord]] = field(default_factory=dict)
    outputs: dict[str, list[Tensor]] = field(default_factory=dict)


class Recorder:
    """Records every selected recurrent layer while active; see :func:`record`."""

    def __init__(
        self,
        model: nn.Module,
        layers: str | Iterable[str] | None = None,
        internals: bool | Collection[str] = False,
        time: Sequence[Any] | None = None,
        modules: str | Iterable[str] | None = None,
    ) -> None:
        self.model = model
        selected = select_layers(model, layers)
        self.specs: list[LayerSpec] = [s for _, specs in selected for s in specs]
        self.internals: tuple[str, ...] = resolve_internals(
            internals, {base_kind(s.kind, m) for m, specs in selected for s in specs}
        )
        self.time = time
        self._watched = list(selected)
        self._by_weight: dict[int, tuple[nn.Module, list[LayerSpec]]] = {}
        self._outputs = select_modules(model, modules)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._blocks: list[Block] = []
        self._group: _Group | None = None
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
        h = self._handles
        h.append(self.model.register_forward_pre_hook(self._root_pre))
        # output hooks first: the root's own output must land before _root_post closes the group
        for name, module in self._outputs:
            h.append(module.register_forward_hook(self._output_hook(name)))
        h.append(self.model.register_forward_hook(self._root_post, always_call=True))

    def _remove_hooks(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def _index_weights(self) -> None:
        self._by_weight = {}
        for module, specs in self._watched:
            first = _first_weight(module)
            if first is not None:
                self._by_weight[id(first)] = (module, specs)

    # -- root forward boundaries ------------------------------------------------------------
    def _root_pre(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._depth == 0:
            self._close_group()  # calls made outside a root forward form their own group
            self._group = _Group()
            self._index_weights()  # weights may have been replaced since __enter__
        self._depth += 1

    def _root_post(self, module: nn.Module, args: tuple[Any, ...], result: Any) -> None:
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            if result is None and sys.exc_info()[0] is not None:
                self._group = None  # the forward raised: drop its partial record
            else:
                self._close_group()

    def _output_hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], result: Any) -> None:
            tensors = _tensors_of(result)
            group = self._current_group()
            for i, t in enumerate(tensors):
                key = name if len(tensors) == 1 else f"{name}[{i}]"
                group.outputs.setdefault(key, []).append(t.detach().clone())

        return hook

    def _current_group(self) -> _Group:
        if self._group is None:
            self._group = _Group()
        return self._group

    def _close_group(self) -> None:
        group, self._group = self._group, None
        if group is None or (not group.layers and not group.outputs):
            return
        self._blocks.append(build_block(self.specs, group.layers, group.outputs, self.internals))

    # -- kernels.Sink ------------------------------------------------------------------------
    def watches(self, weight: Tensor, owner: object) -> bool:
        return self._resolve(weight, owner) is not None

    def wants_inputs(self) -> bool:
        return bool(self.internals)

    def _resolve(self, weight: Tensor, owner: object) -> tuple[nn.Module, list[LayerSpec]] | None:
        hit = self._by_weight.get(id(weight))
        if hit is not None:
            return hit
        for module, specs in self._watched:  # weights recomputed per call (parametrizations)
            if module is owner:
                return module, specs
        return None

    def on_stack(self, call: kernels.StackCall) -> None:
        hit = self._resolve(call.weights[0], call.owner)
        if hit is None or call.layers[0].output.numel() == 0:  # 0 samples: nothing to record
            return
        _, specs = hit
        unsorted = call.unsorted_indices
        group = self._current_group()
        last = len(call.layers) - 1
        for spec in specs:
            rec = stack_internals(
                call, spec.index, unsorted, self.internals, escapes=spec.index == last
            )
            group.layers.setdefault(spec.label, []).append(rec)

    def on_cell(self, call: kernels.CellCall) -> None:
        hit = self._resolve(call.weights[0], call.owner)
        if hit is None or call.h.numel() == 0:  # 0 samples: nothing to record
            return
        _, specs = hit
        rec = cell_internals(call, self.internals)
        self._current_group().layers.setdefault(specs[0].label, []).append(rec)

    # -- results -------------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """Assemble everything recorded so far into a labeled dataset.

        Returns
        -------
        xarray.Dataset
            Dims ``sample, layer, direction, time, unit``; see the README's schema.
        """
        if self._active and self._depth == 0:
            self._close_group()  # cell calls made outside any root forward
        if not self._blocks:
            raise RecordingError(
                "nothing was recorded: run the model (model(x)) inside the `with "
                "seqacts.record(model) as rec:` block before calling rec.to_dataset(), and check "
                f"that its forward reaches the selected layers ({', '.join(s.label for s in self.specs)})"
            )
        return build_dataset(self.specs, self._blocks, self.internals, self.model, self.time)

    def pop_dataset(self) -> xr.Dataset:
        """Like :meth:`to_dataset`, then forget what was recorded (bounded memory when streaming)."""
        ds = self.to_dataset()
        self._blocks.clear()
        return ds


def _first_weight(module: nn.Module) -> Tensor | None:
    if isinstance(module, nn.RNNBase):
        flat = getattr(module, "_flat_weights", None)
        return flat[0] if flat else None
    return getattr(module, "weight_ih", None)


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
    layers: str | Iterable[str] | None = None,
    internals: bool | Collection[str] = False,
    time: Sequence[Any] | None = None,
    modules: str | Iterable[str] | None = None,
) -> Recorder:
    """Record every recurrent layer of ``model`` while the ``with`` block runs.

    Parameters
    ----------
    model : torch.nn.Module
        The root model; each of its forward calls inside the block appends samples.
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

    Returns
    -------
    Recorder
        A context manager; ``rec.to_dataset()`` returns the ``xarray.Dataset``.
    """
    return Recorder(model, layers=layers, internals=internals, time=time, modules=modules)
