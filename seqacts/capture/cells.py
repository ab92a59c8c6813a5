"""Python cells: modules called once per step as ``cell(x_t, state) -> state``, no kernel.

seqacts records such a cell (``cells=``, :func:`seqacts.register_cell`, or a subclass of a
torch cell whose ``forward`` never runs torch's kernel) from its own call, seen through the
recorder's module hooks: ``h`` (and ``c``) from the state it returns, ``h_0`` (and ``c_0``)
from the state it received, zeros when it received none. The state is the call's second
positional argument, or a keyword ``hx``, ``state``, ``hidden`` or ``states``. Each call
becomes the same per-step :class:`~seqacts.capture.records.LayerRecord` a cell kernel call
gives, linked along ``time`` by the same chain rule. Nothing of the cell's math is
recomputed: a ``"h,c"`` cell has the internal ``c`` (the cell state it returned), no gates.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CellStateError
from ..kinds import kind_spec
from ..kinds.builtin import user_cell_label
from .records import LayerRecord, step_record
from .specs import LayerSpec

__all__ = ["STATE_KEYWORDS", "CellWatch", "cell_record", "describe", "received_state"]

#: Keywords under which a cell may receive its state.
STATE_KEYWORDS: tuple[str, ...] = ("hx", "state", "hidden", "states")


def describe(value: object) -> str:
    """A short account of a value: a tensor's shape, a tuple's items, else its type."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        items = ", ".join(describe(v) for v in value[:3]) + (", ..." if len(value) > 3 else "")
        return f"a {type(value).__name__} of {len(value)} ({items})"
    return "None" if value is None else f"a {type(value).__name__}"


def received_state(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    """The state a cell call received: its second positional argument, or a state keyword."""
    if len(args) > 1:
        return args[1]
    return next((kwargs[k] for k in STATE_KEYWORDS if k in kwargs), None)


def _expected(state: tuple[str, ...]) -> str:
    if state == ("h",):
        return "a tensor h of shape (batch, hidden), as declared by state \"h\""
    return "a tuple (h, c) of two tensors of shape (batch, width), as declared by state \"h,c\""


def _parts(value: object, state: tuple[str, ...]) -> tuple[Tensor, ...] | None:
    """``value`` split into the declared state's tensors, each 2-D with one batch size; None
    when it is not such a state."""
    parts = (value,) if state == ("h",) else value
    if not isinstance(parts, (tuple, list)) or len(parts) != len(state):
        return None
    if not all(isinstance(t, Tensor) and t.dim() == 2 and t.is_floating_point() for t in parts):
        return None
    if len({t.shape[0] for t in parts}) != 1:
        return None
    return tuple(parts)


def cell_record(label: str, module: object, args: tuple[Any, ...], kwargs: dict[str, Any],
                result: object, state: tuple[str, ...], names: tuple[str, ...]) -> LayerRecord:
    """The record of one call of a Python cell, from the state it received and returned.

    Raises
    ------
    CellStateError
        When it returned, or received, something that is not the declared state; the message
        names the module, what it got, and what was expected.
    """
    where = f"cells: {label} ({type(module).__name__})"
    out = _parts(result, state)
    if out is None:
        raise CellStateError(
            f"{where} returned {describe(result)}; expected {_expected(state)}. Declare the "
            "state the cell returns (cells={..: \"h\"} or \"h,c\"); a cell returning (output, "
            "state) is recorded by naming the module that computes the state")
    given = received_state(args, kwargs)
    got = tuple(torch.zeros_like(t) for t in out) if given is None else _parts(given, state)
    if got is None or [tuple(t.shape) for t in got] != [tuple(t.shape) for t in out]:
        raise CellStateError(
            f"{where} received {describe(given)} as its state and returned "
            f"{describe(result)}; expected the same state on both sides: {_expected(state)}")
    h_prev, c_prev = got[0].detach(), got[1].detach() if len(got) > 1 else None
    h, c = out[0].detach(), out[1].detach() if len(out) > 1 else None
    extra = {"c": c.clone().reshape(*c.shape[:1], 1, 1, c.shape[-1])} if c is not None and "c" in names else {}
    return step_record(h_prev, c_prev, h, c, extra)


class CellWatch:
    """The cells a recorder records from their own calls, and the torch modules whose forward
    returned without running the kernel they are watched through.

    A torch cell (an ``nn.LSTMCell`` subclass with its own math, say) found so is recorded from
    then on as a Python cell of its state (``cell(h,c)``); a fused stack found so cannot be
    (its steps are not calls) and is named in :attr:`notes`, with what to pass instead.
    """

    def __init__(self, specs: list[LayerSpec], hooked: list[tuple[nn.Module, LayerSpec]],
                 kernel: dict[int, tuple[nn.Module, list[LayerSpec]]]) -> None:
        self.specs = specs  # the recording's own list: a converted cell's spec is replaced in it
        self.hooked = {id(m): (m, spec.label, kind_spec(spec.kind).states) for m, spec in hooked}
        self.kernel = kernel
        self.notes: dict[str, str] = {}  # label -> what to tell about it, once
        self._reached: dict[int, int] = {}
        self._open: dict[int, list[int]] = {}

    def reached(self, module: object) -> None:
        """A kernel call of a watched module arrived."""
        self._reached[id(module)] = self._reached.get(id(module), 0) + 1

    def entered(self, module: nn.Module) -> None:
        """A watched module's forward starts."""
        if id(module) in self.kernel:
            self._open.setdefault(id(module), []).append(self._reached.get(id(module), 0))

    def returned(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                 result: object, names: tuple[str, ...]) -> tuple[str, LayerRecord] | None:
        """A watched module's forward returned ``result``: the record to add, if any."""
        key = id(module)
        opened = self._open.get(key)
        if opened:
            before = opened.pop()
            if self._reached.get(key, 0) == before and key not in self.hooked:
                self._bypassed(module)
        hit = self.hooked.get(key)
        if hit is None or hit[0] is not module:
            return None
        _, label, state = hit
        rec = cell_record(label, module, args, kwargs, result, state, names)
        self._check_width(label, module, rec)  # also from a batch of 0 samples: (0, width)
        return label, rec

    def _bypassed(self, module: nn.Module) -> None:
        watched, specs = self.kernel[id(module)]
        if watched is not module:
            return
        spec = specs[0]
        cls = type(module).__name__
        if not spec.is_cell:
            paths = spec.module_path or "model"
            self.notes.setdefault(spec.module_path, (
                f"seqacts: {paths} ({cls}) returned without running torch's recurrent kernel "
                "(its forward computes its own steps), so its layers cannot be recorded from it; "
                f"name its per-step cell with cells={{'<path>': 'h'}} (or 'h,c'), or record its "
                f"output with modules=[{paths!r}]"))
            return
        kind = user_cell_label(kind_spec(spec.kind).states)
        new = replace(spec, kind=kind, hooked=True, n_units=0, n_cell_units=0)
        self.specs[self.specs.index(spec)] = new
        specs[0] = new
        self.hooked[id(module)] = (module, spec.label, kind_spec(kind).states)
        self.notes[spec.label] = (
            f"seqacts: {spec.label} ({cls}, a subclass of a torch cell) returned without running "
            f"torch's cell kernel: its forward has its own math. It is recorded from the state it "
            f"returns, as kind {kind!r} (no gates recomputed); pass "
            f"cells={{{spec.label!r}: {','.join(kind_spec(kind).states)!r}}} to say so")

    def _check_width(self, label: str, module: nn.Module, rec: LayerRecord) -> None:
        """Set the layer's width from its first call; raise when a later call differs."""
        i = next(i for i, s in enumerate(self.specs) if s.label == label)
        spec, width = self.specs[i], int(rec.h.shape[-1])
        cell = int(rec.cn.shape[-1]) if rec.cn is not None else width
        if spec.n_units == 0:
            self.specs[i] = replace(spec, n_units=width, n_cell_units=cell)
        elif (spec.n_units, spec.n_cell_units) != (width, cell):
            raise CellStateError(
                f"cells: {label} ({type(module).__name__}) returned a state of width {width} "
                f"(cell {cell}), but {spec.n_units} (cell {spec.n_cell_units}) before; a cell "
                "must keep its width from step to step")
