"""From per-call records to a dataset: the pipeline every front end shares.

A front end (the torch :class:`~seqacts.capture.recorder.Recorder`, or one that is not built on
torch modules) opens a :class:`Group` per forward call of its model, adds one
:class:`~seqacts.capture.records.LayerRecord` per layer call with :meth:`Group.add` (the chain
rule links them, :mod:`seqacts.capture.chains`), and hands each finished group to
:meth:`Recording.close`, which lays it out as a block of sample rows; :meth:`Recording.dataset`
concatenates the blocks into the labeled dataset and tells what went wrong, once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from torch import Tensor

from ..errors import RecordingWarning
from .assembly import Block, build_block, build_dataset
from .chains import End, Linker, lay_out, split_messages
from .declared import step_splits, steps_message
from .diagnose import report_problems
from .module_rows import Flow, mixed_rows_message, place_outputs, unplaced_message
from .records import LayerRecord
from .specs import LayerSpec

__all__ = ["Group", "Recording"]


@dataclass
class Group:
    """Everything recorded during one forward call of the root model (or outside any)."""

    linker: Linker = field(default_factory=Linker)
    outputs: dict[str, list[Tensor]] = field(default_factory=dict)
    positions: dict[str, list[int]] = field(default_factory=dict)  # layer calls before each
    trace: list[tuple[str, int]] = field(default_factory=list)  # layer calls: label, chain
    flow: Flow = field(default_factory=Flow)  # storages of the trace's and the outputs' calls
    labels: dict[str, Any] = field(default_factory=dict)  # the labels in force when it started

    def add(self, label: str, rec: LayerRecord, x: Tensor | None, out: Tensor,
            trace: bool = False) -> int:
        """Link one layer call's record into its chains; returns the chain's index.

        ``trace``: also note the call's order and data (its input ``x`` and output ``out``),
        which place the outputs of ``modules=`` (:mod:`seqacts.capture.module_rows`).
        """
        chain = self.linker.add(label, rec)
        if trace:
            self.trace.append((label, chain))
            self.flow.add_kernel(x, out.detach())
        return chain

    def add_output(self, name: str, inputs: list[Tensor], tensors: list[Tensor]) -> None:
        """Note one call of a ``modules=`` module: its input tensors and output tensors."""
        for i, t in enumerate(tensors):
            key = name if len(tensors) == 1 else f"{name}[{i}]"
            self.outputs.setdefault(key, []).append(t.detach().clone())
            self.positions.setdefault(key, []).append(len(self.trace))
            self.flow.add_call(key, inputs, t.detach())


@dataclass
class Recording:
    """The blocks of a recording so far, and what to tell about them.

    Parameters
    ----------
    specs : list of LayerSpec
        The recorded layers, in the dataset's ``layer`` order.
    internals : tuple of str
        The internals recorded (:func:`seqacts.capture.records.resolve_internals`).
    declared : frozenset of str
        The layers of ``chain=`` (:func:`seqacts.capture.declared.declared_layers`).
    received : tuple of str
        The received-state variables their records carry (``h_in``, ``c_in``).
    """

    specs: list[LayerSpec]
    internals: tuple[str, ...] = ()
    declared: frozenset[str] = frozenset()
    received: tuple[str, ...] = ()
    blocks: list[Block] = field(default_factory=list)
    failures: dict[str, list[str]] = field(default_factory=dict)  # label -> errors
    ends: dict[str, list[End]] = field(default_factory=dict)  # chain ends of the latest group
    splits: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # label -> reason -> calls
    calls: dict[str, int] = field(default_factory=dict)  # each layer's calls so far
    unplaced: list[str] = field(default_factory=list)  # module outputs left NaN, one message each
    notes: list[str] = field(default_factory=list)  # further warnings, told once each
    steps: dict[str, list[int]] = field(default_factory=dict)  # label -> calls splitting a loop
    groups: int = 0  # groups laid out so far: the next block's model_call

    def new_group(self, labels: dict[str, Any] | None = None) -> Group:
        """An empty group whose chain rule knows the chain ends of the previous group and the
        declared layers; ``labels``: those in force (each block's per-sample coordinates)."""
        return Group(linker=Linker(self.ends, self.declared), labels=dict(labels or {}))

    def fail(self, label: str, error: BaseException) -> None:
        """Note a failure of seqacts' own bookkeeping for ``label`` (told with the dataset)."""
        self.failures.setdefault(label, []).append(f"{type(error).__name__}: {error}")

    def close(self, group: Group | None) -> None:
        """Lay a finished group out as one block of sample rows (nothing for an empty group).

        A failure is noted (:meth:`fail`), never raised: the model's forward has already run.
        """
        if group is None or (not group.linker.chains and not group.outputs):
            return
        linker = group.linker
        self.ends = {**self.ends, **linker.ends()}
        try:
            layout = lay_out([s.label for s in self.specs], linker)
            linker.release()
            outputs, unplaced = place_outputs(layout, group.trace, group.outputs,
                                              group.positions, group.flow)
            block = build_block(self.specs, layout, outputs, self.internals + self.received)
            block.model_call, block.labels = self.groups, group.labels
            self.groups += 1
            first = sum(b.n_samples for b in self.blocks)
            if unplaced:
                self.unplaced += unplaced_message(unplaced, len(self.blocks), first,
                                                  first + block.n_samples - 1, layout.plain)
            if not group.trace:
                self.unplaced += mixed_rows_message(group.outputs, len(self.blocks), first,
                                                    first + block.n_samples - 1)
            self.blocks.append(block)
            for label, splits in linker.splits.items():
                seen = self.calls.get(label, 0)
                for split in splits:
                    self.splits.setdefault(label, {}).setdefault(split.reason, []).append(
                        seen + split.call)
            for label, calls in step_splits(linker).items():
                seen = self.calls.get(label, 0)
                self.steps.setdefault(label, []).extend(seen + c for c in calls)
            for label, n in linker.n_calls.items():
                self.calls[label] = self.calls.get(label, 0) + n
        except Exception as error:  # never break the user's forward: report it with the dataset
            self.fail("(assembly)", error)

    def unused(self, excused: Sequence[str] = ()) -> list[str]:
        """The layers that recorded no call (but those that failed or are ``excused``)."""
        calls = np.zeros(len(self.specs), dtype=np.int64)
        for block in self.blocks:
            if block.n_calls is not None:
                calls += block.n_calls
        return [s.label for s, n in zip(self.specs, calls, strict=True)
                if n == 0 and s.label not in self.failures and s.label not in excused]

    def dataset(self, model: Any, time: Sequence[Any] | None,
                excused: Sequence[str] = ()) -> xr.Dataset:
        """Concatenate the blocks into the labeled dataset, warning once per problem.

        Needs at least one block. ``excused``: layers with no call that a note already explains.
        """
        ds = build_dataset(self.specs, self.blocks, self.internals, model, time)
        notes = [b.note for b in self.blocks if b.note]
        report_problems(ds, notes, self.unused(excused), self.failures, stacklevel=4)
        steps = steps_message(self.steps)
        for message in [*split_messages(self.splits), *([steps] if steps else []),
                        *self.unplaced, *self.notes]:
            warnings.warn(message, RecordingWarning, stacklevel=3)
        return ds
