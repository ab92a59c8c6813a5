"""``seqacts.record(keras_model)``: see every call of the model's recurrent Keras layers.

While the block is active each selected layer's ``call`` is wrapped *on the instance* (the
class is untouched, and the previous instance attribute, if any, is put back in ``finally``),
and so is the root model's, to delimit groups. A wrapped call runs the layer as before and
returns its own result; seqacts then re-runs the recurrence from the same inputs, mask and
initial state (:mod:`seqacts.keras.unroll`) and hands one :class:`LayerRecord` per cell to the
same chain rule and assembly as PyTorch's calls (:mod:`seqacts.capture.chains`,
:mod:`seqacts.capture.assembly`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..capture.assembly import Block, build_block, build_dataset
from ..capture.chains import Linker, lay_out
from ..capture.records import LayerRecord, resolve_internals
from ..errors import OptionError, RecordingError, RecordingWarning, UnsupportedModelError
from ..options import RecordingOptions
from .dataset import finish_dataset, model_facts
from .discovery import KerasLayer, recurrent_layers, select_layers
from .runs import CellRun, LayerRun
from .unroll import initial_states, run_layer

__all__ = ["KerasRecorder", "interventions_unsupported"]

_MISSING = object()


def is_concrete(x: Any) -> bool:
    """Whether ``x`` holds values (an eager call), not a symbol being traced."""
    import keras

    if isinstance(x, keras.KerasTensor):
        return False
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.executing_eagerly())
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "torch":
        return getattr(getattr(x, "device", None), "type", "meta") != "meta"
    return True


class KerasRecorder:
    """Records every selected recurrent layer of a Keras model while active."""

    def __init__(self, model: Any, options: RecordingOptions | None = None) -> None:
        options = RecordingOptions() if options is None else options
        if options.edits:
            raise interventions_unsupported(model)
        if options.modules:
            raise OptionError("modules: recording other layers' outputs is PyTorch-only for now; "
                              "for a Keras model record its outputs with model(x) itself")
        if getattr(options, "cells", None):
            raise OptionError("cells: Python cells are recorded in PyTorch models only; a Keras "
                              "model's LSTM/GRU/SimpleRNN layers are found by themselves")
        if options.chain:
            raise OptionError("chain: declared continuation is PyTorch-only for now; a Keras "
                              "layer's steps are recorded within its own call, so pass no chain=")
        self.model = model
        self.options = options
        self.entries: list[KerasLayer] = select_layers(model, options.layers)
        self.specs = [s for e in self.entries for s in e.specs]
        self.internals = resolve_internals(options.internals, {s.kind for s in self.specs})
        self.time = options.time
        every = recurrent_layers(model)
        self._root_groups = not any(e.layer is model for e in every)
        self._saved: list[tuple[Any, Any]] = []
        self._blocks: list[Block] = []
        self._masks: list[np.ndarray] = []  # per block: (sample, layer, time) int8
        self._linker: Linker | None = None
        self._pending_masks: dict[int, np.ndarray] = {}  # id(record) -> (sample, time)
        self._deviation = np.zeros(len(self.specs))
        self._failures: dict[str, list[str]] = {}
        self._traced = 0
        self._depth = 0
        self._active = False

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> KerasRecorder:
        if self._active:
            raise RecordingError("this recorder is already active; use a new record() block")
        try:
            for entry in self.entries:
                self._wrap(entry.layer, self._layer_call(entry))
            if self._root_groups:
                self._wrap(self.model, self._root_call)
        except BaseException:
            self._unwrap()
            raise
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._unwrap()
        finally:
            self._active = False
            self._depth = 0
            if exc[0] is None:
                self._close_group()
            else:
                self._linker = None

    def _wrap(self, layer: Any, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        previous = vars(layer).get("call", _MISSING)
        self._saved.append((layer, previous))
        object.__setattr__(layer, "call", make(layer.call))

    def _unwrap(self) -> None:
        while self._saved:
            layer, previous = self._saved.pop()
            if previous is _MISSING:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", previous)

    # -- groups --------------------------------------------------------------------------------
    def _root_call(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def root(*args: Any, **kwargs: Any) -> Any:
            if self._depth == 0:
                self._close_group()
            self._depth += 1
            try:
                result = call(*args, **kwargs)
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._linker = None  # the forward raised: drop its partial record
                raise
            self._depth -= 1
            if self._depth == 0:
                self._close_group()
            return result

        return root

    def _group(self) -> Linker:
        if self._linker is None:
            self._linker = Linker()
        return self._linker

    def _close_group(self) -> None:
        linker, self._linker = self._linker, None
        if linker is None or not linker.chains:
            return
        try:
            labels = [s.label for s in self.specs]
            layout = lay_out(labels, linker)
            linker.release()
            block = build_block(self.specs, layout, {}, self.internals)
            mask = np.zeros((block.n_samples, len(labels), block.n_steps), dtype=np.int8)
            for li, label in enumerate(labels):
                for place in layout.placements.get(label, []):
                    m = self._pending_masks.pop(id(place.record))
                    offset = int(np.max(place.offset))
                    mask[place.row : place.row + m.shape[0], li, offset : offset + m.shape[1]] = m
            self._blocks.append(block)
            self._masks.append(mask)
        except Exception as error:  # never break the user's forward: report it with the dataset
            self._failures.setdefault("(assembly)", []).append(f"{type(error).__name__}: {error}")
        self._pending_masks.clear()

    # -- layer calls -----------------------------------------------------------------------------
    def _layer_call(self, entry: KerasLayer) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def make(call: Callable[..., Any]) -> Callable[..., Any]:
            signature = inspect.signature(call)

            def wrapped(*args: Any, **kwargs: Any) -> Any:
                try:
                    bound = signature.bind(*args, **kwargs).arguments
                    sequences = args[0] if args else next(iter(bound.values()))
                    concrete = is_concrete(sequences)
                    starts = self._starts(entry, sequences, bound) if concrete else None
                except Exception as error:
                    self._fail(entry, error)
                    return call(*args, **kwargs)
                result = call(*args, **kwargs)
                if not concrete:
                    self._traced += 1
                    return result
                try:
                    self._record(entry, sequences, starts, bound, result)
                except Exception as error:  # the model's result stands; the record is lost
                    self._fail(entry, error)
                return result

            return wrapped

        return make

    def _fail(self, entry: KerasLayer, error: BaseException) -> None:
        for spec in entry.specs:
            self._failures.setdefault(spec.label, []).append(f"{type(error).__name__}: {error}")

    def _starts(self, entry: KerasLayer, sequences: Any, bound: dict[str, Any]) -> list[Any]:
        given = bound.get("initial_state")
        if len(entry.rnns) == 1:
            return [initial_states(entry.rnns[0], sequences, given)]
        half = len(given) // 2 if given is not None else 0
        parts = (given[:half], given[half:]) if given is not None else (None, None)
        return [initial_states(rnn, sequences, part)
                for rnn, part in zip(entry.rnns, parts, strict=True)]

    def _record(self, entry: KerasLayer, sequences: Any, starts: Any, bound: dict[str, Any],
                result: Any) -> None:
        training = bool(bound.get("training") or False)
        for rnn in entry.rnns:
            if training and any(getattr(c, "dropout", 0) or getattr(c, "recurrent_dropout", 0)
                                for c in entry.cells):
                raise RecordingError(
                    f"{rnn.name}: called with training=True and dropout, whose random masks "
                    "cannot be replayed; record with training=False (seqacts.extract does)")
        runs = [run_layer(rnn, _cells(rnn), sequences, start, bound.get("mask"), training,
                          self.internals) for rnn, start in zip(entry.rnns, starts, strict=True)]
        deviation = _deviation(entry, runs, result)
        group = self._group()
        for spec in entry.specs:
            li = self.specs.index(spec)
            self._deviation[li] = max(self._deviation[li], deviation)
            rec = _record_of([run.cells[spec.index] for run in runs])
            self._pending_masks[id(rec)] = runs[0].mask.astype(np.int8)
            group.add(spec.label, rec)

    # -- results ---------------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """Assemble everything recorded so far into a labeled dataset (see :func:`record`)."""
        if self._active and self._depth == 0:
            self._close_group()
        if not self._blocks:
            failed = "; ".join(f"{k}: {v[0]}" for k, v in self._failures.items())
            if failed:
                raise RecordingError(f"nothing was recorded: recording failed ({failed})")
            traced = (" (its layers were only traced, e.g. by model.predict or a tf.function/"
                      "jax.jit: call model(x) itself inside the block)") if self._traced else ""
            raise RecordingError(
                "nothing was recorded: run the model (model(x)) inside the `with "
                f"seqacts.record(model) as rec:` block before calling rec.to_dataset(){traced}; "
                f"selected layers: {', '.join(s.label for s in self.specs)}")
        facts = model_facts(self.model)
        # provenance reads the model's class and named_parameters(): ModelFacts has both
        ds = build_dataset(self.specs, self._blocks, self.internals, facts,  # type: ignore[arg-type]
                           self.time)
        ds = finish_dataset(ds, self.entries, self.specs, self._masks, self._deviation, facts)
        off = [f"{s.label} ({d:.1e})" for s, d in zip(self.specs, self._deviation, strict=True)
               if d != 0]
        if off:
            warnings.warn(
                f"seqacts: the re-run of {', '.join(off)} is not bitwise the layer's own output "
                "(its backend took a path seqacts does not replay): the recorded output differs "
                "from the layer's by up to the value shown, the 'keras_deviation' coordinate; "
                "please report the model (README, 'Keras')",
                RecordingWarning, stacklevel=2)
        if self._failures:
            ds.attrs["failed_layers"] = " ".join(self._failures)
            text = "; ".join(f"{label}: {len(errs)} call(s), first error: {errs[0]}"
                             for label, errs in self._failures.items())
            warnings.warn(f"seqacts: recording failed for some calls ({text}); the model ran "
                          "normally, but these calls are missing from the dataset",
                          RecordingWarning, stacklevel=2)
        return ds

    def pop_dataset(self) -> xr.Dataset:
        """Like :meth:`to_dataset`, then forget what was recorded."""
        ds = self.to_dataset()
        self._blocks.clear()
        self._masks.clear()
        self._failures.clear()
        return ds


def _cells(rnn: Any) -> list[Any]:
    cell = rnn.cell
    return list(cell.cells) if type(cell).__name__ == "StackedRNNCells" else [cell]


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _record_of(runs: list[CellRun]) -> LayerRecord:
    """One record from one cell's run per direction: ``(sample, direction, ...)``."""
    def stack(name: str) -> torch.Tensor:
        return _tensor(np.stack([getattr(r, name) for r in runs], axis=1))

    lstm = runs[0].c0 is not None
    n, t = runs[0].h.shape[:2]
    return LayerRecord(
        h=stack("h"), h0=stack("h0"), hn=stack("hn"),
        c0=stack("c0") if lstm else None, cn=stack("cn") if lstm else None,
        lengths=torch.full((n,), t, dtype=torch.int64),
        extra={name: _tensor(np.stack([r.extra[name] for r in runs], axis=1))
               for name in runs[0].extra},
    )


def _merge(entry: KerasLayer, outputs: list[Any]) -> list[Any]:
    """The layer's visible output(s) from each direction's, as ``Bidirectional`` merges them."""
    from keras import ops

    if len(outputs) == 1:
        return outputs
    forward, backward = outputs
    if entry.layer.return_sequences:
        backward = ops.flip(backward, axis=1)
    mode = entry.layer.merge_mode
    if mode == "concat":
        return [ops.concatenate([forward, backward], axis=-1)]
    if mode == "sum":
        return [forward + backward]
    if mode == "ave":
        return [(forward + backward) / 2]
    if mode == "mul":
        return [forward * backward]
    return [forward, backward]


def _deviation(entry: KerasLayer, runs: list[LayerRun], result: Any) -> float:
    """The largest |difference| between the layer's own output and the re-run's."""
    from keras import ops, tree

    expected = _merge(entry, [r.output for r in runs])
    actual = tree.flatten(result)[: len(expected)]
    worst = 0.0
    for a, b in zip(actual, expected, strict=True):
        a_np = np.asarray(ops.convert_to_numpy(a), dtype=np.float64)
        b_np = np.asarray(ops.convert_to_numpy(b), dtype=np.float64)
        if a_np.shape != b_np.shape:
            raise RecordingError(f"{entry.path}: the re-run's output has shape {b_np.shape}, the "
                                 f"layer's {a_np.shape}")
        same = (a_np == b_np) | (np.isnan(a_np) & np.isnan(b_np))  # NaN in, NaN out: equal
        diff = np.where(same, 0.0, np.abs(a_np - b_np))
        worst = max(worst, float(np.max(np.nan_to_num(diff, nan=np.inf), initial=0.0)))
    return worst


def interventions_unsupported(model: Any) -> UnsupportedModelError:
    """The error for an intervention on a Keras model."""
    return UnsupportedModelError(
        f"{type(model).__name__}: interventions (ablate, patch, intervene, ablation_scan, "
        "edits=) are PyTorch-only for now; seqacts.extract(model, x) records Keras models "
        "without edits")
