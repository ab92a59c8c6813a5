"""Turn intercepted kernel calls into per-layer records, with per-timestep internals.

A record is sample-major, ``(sample, direction, time, unit)``, and in the caller's sample
order: ``PackedSequence`` data is padded (NaN past each sample's length) and un-sorted here,
``batch_first`` is undone here, so every later step sees one layout. On the CPU the layers of
one stack call are written into shared block-shaped buffers, ``(sample, layer, direction, time,
unit)``, which ``assemble.build_block`` adopts as the dataset's arrays when they fit exactly:
the one transposing copy out of the kernel's time-major output is then the only copy.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from ..errors import OptionError
from ..kinds import kind_spec, registered_kinds
from ..schema import gate_order
from .calls import CellCall, StackCall
from .specs import DirectionWeights, layer_weights
from .unroll import empty, layer_internals, lstm_internals_from_gates

__all__ = ["LayerRecord", "cell_internals", "resolve_internals", "stack_internals", "step_record"]


@dataclass
class LayerRecord:
    """One layer's values from one kernel call, sample-major, in the caller's sample order."""

    h: Tensor  # (N, D, T, H_out)
    h0: Tensor  # (N, D, H_out)
    hn: Tensor
    c0: Tensor | None  # (N, D, H)
    cn: Tensor | None
    lengths: Tensor  # (N,) int64, on the CPU
    extra: dict[str, Tensor] = field(default_factory=dict)  # internals, (N, D, T, H)
    #: name -> (buffer, k): the value is ``buffer[:, k]`` of a (N, L, D, T, W) buffer
    shared: dict[str, tuple[Tensor, int]] = field(default_factory=dict)
    #: the states exactly as the kernel received / returned them (h[, c]), kept only while
    #: :mod:`seqacts.chains` may still need them to recognise a call continuing this one
    state_in: tuple[Tensor, ...] = ()
    state_out: tuple[Tensor, ...] = ()


def resolve_internals(internals: bool | str | Collection[str] | None, kinds: set[str]) -> tuple[str, ...]:
    """Validate ``internals=`` against the kinds recorded (their equations' kinds: ``LSTM`` for
    an ``LSTMCell``); return the variable names, in the order the registry lists the kinds."""
    if internals is None or internals is False:
        return ()
    specs = [kind_spec(k) for k in registered_kinds()]
    applicable = [n for spec in specs if spec.name in kinds for n in spec.internals]
    if internals is True:
        return tuple(dict.fromkeys(applicable))
    wanted = [internals] if isinstance(internals, str) else list(internals)
    every = {n for spec in specs for n in spec.internals}
    unknown = [n for n in wanted if n not in every]
    if unknown:
        raise OptionError(
            f"internals: unknown variable {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(sorted(every))} (or pass internals=True for all)"
        )
    missing = [n for n in wanted if n not in applicable]
    if missing:
        raise OptionError(
            f"internals: {', '.join(map(repr, missing))} does not exist for the selected layers "
            f"(kinds {', '.join(sorted(kinds))}); available: {', '.join(dict.fromkeys(applicable))}"
        )
    return tuple(dict.fromkeys(wanted))


def _time_major(x: Tensor, batch_sizes: Tensor | None, batch_first: bool, fill: float) -> Tensor:
    if batch_sizes is not None:
        padded, _ = pad_packed_sequence(PackedSequence(x, batch_sizes), padding_value=fill)
        return padded
    return x.transpose(0, 1) if batch_first else x


def _unsort(t: Tensor | None, order: Tensor | None, dim: int) -> Tensor | None:
    if t is None or order is None:
        return t
    return t.index_select(dim, order.to(t.device))


#: Per live stack call, its sets of shared buffers, each with the layers it has handed out.
_SHARED: dict[int, list[tuple[set[int], dict[str, Tensor]]]] = {}


def _claim(call: StackCall, k: int) -> dict[str, Tensor]:
    """The shared buffers, by name, in which layer ``k`` of ``call`` is to be written.

    Every recorder watching the call (nested ``record()`` blocks) gets its own set: the first
    set still missing layer ``k``, so no two datasets ever share memory.
    """
    key = id(call)
    sets = _SHARED.get(key)
    if sets is None:
        sets = _SHARED[key] = []
        weakref.finalize(call, _SHARED.pop, key, None)
    for claimed, buffers in sets:
        if k not in claimed:
            claimed.add(k)
            return buffers
    sets.append(({k}, {}))
    return sets[-1][1]


def _slot(
    buffers: dict[str, Tensor],
    shared: dict[str, tuple[Tensor, int]],
    name: str,
    call: StackCall,
    k: int,
    shape: tuple[int, int, int, int],
    like: Tensor,
) -> Tensor:
    """Layer ``k``'s ``(N, D, T, W)`` slot for ``name``, in a buffer shared across the layers.

    Off the CPU each layer gets its own buffer: device memory is not allocated lazily.
    """
    n, d, t, w = shape
    if like.device.type != "cpu":
        return empty(shape, like)
    if name not in buffers:
        buffers[name] = empty((n, len(call.layers), d, t, w), like)
    shared[name] = (buffers[name], k)
    return buffers[name][:, k]


def _store(slot: Tensor, time_major: Tensor, order: Tensor | None) -> None:
    """Copy ``(T, N, ...)`` values, taking samples in ``order``, into a ``(N, ..., T, W)`` slot."""
    if order is not None:
        time_major = time_major.index_select(1, order.to(time_major.device))
    slot.copy_(time_major.movedim(0, -2))


def _lengths(batch_sizes: Tensor | None, batch: int, steps: int) -> Tensor:
    """Each sample's valid steps: from a packed sequence's batch sizes, else all ``steps``."""
    if batch_sizes is None:
        return torch.full((batch,), steps, dtype=torch.int64)
    return (batch_sizes.unsqueeze(0) > torch.arange(batch).unsqueeze(1)).sum(1)


def stack_internals(
    call: StackCall, k: int, unsorted: Tensor | None, names: tuple[str, ...]
) -> LayerRecord:
    """The record of layer ``k`` of a fused stack call, with the requested internals.

    Every record's ``h`` is a copy in its own buffer, so the top layer's output, which the
    model receives and may later modify in place, needs nothing extra.
    """
    run = call.layers[k]
    n_dir = 2 if call.bidirectional else 1
    bs = call.batch_sizes
    out = _time_major(run.output, bs, call.batch_first, math.nan)
    steps, batch = out.shape[0], out.shape[1]
    lengths = _lengths(bs, batch, steps)
    order = unsorted if bs is not None else None
    buffers = _claim(call, k)
    shared: dict[str, tuple[Tensor, int]] = {}
    out_h = out.reshape(steps, batch, n_dir, -1)
    h = _slot(buffers, shared, "h", call, k, (batch, n_dir, steps, out_h.shape[3]), out)
    _store(h, out_h, order)
    h0 = run.h0.clone().transpose(0, 1)
    c0 = run.c0.clone().transpose(0, 1) if run.c0 is not None else None
    extra: dict[str, Tensor] = {}
    wanted = [n for n in names if n in kind_spec(call.kind).internals]
    if wanted:
        x = _time_major(run.input, bs, call.batch_first, 0.0).to(out.dtype)
        weights = [w.to(out.dtype) for w in run.weights]  # the dtype the kernel ran in (autocast)
        per_dir = layer_weights(weights, call.has_biases, call.has_projection, call.bidirectional, 0)
        dev_lengths = lengths.to(x.device) if bs is not None else None
        hidden = per_dir[0].w_ih.shape[0] // len(gate_order(call.kind))
        shape = (batch, n_dir, steps, hidden)
        extra = {n: _slot(buffers, shared, n, call, k, shape, out) for n in wanted}
        h0_k = h0.to(out.dtype)
        c0_k = c0.to(out.dtype) if c0 is not None else None
        for d, w in enumerate(per_dir):
            if run.gates and order is None:  # the kernel's own gates, read from its workspace
                lstm_internals_from_gates(
                    run.gates[d], c0[:, d] if c0 is not None else None, reverse=d == 1,
                    names=wanted, out={n: v[:, d] for n, v in extra.items()},
                )
                continue
            values = layer_internals(
                call.kind, x, out_h[:, :, d], h0_k[:, d], c0_k[:, d] if c0_k is not None else None, w,
                lengths=dev_lengths, reverse=d == 1, names=wanted,
                out={n: v[:, d] for n, v in extra.items()} if order is None else None,
                c_edit=_for_direction(run.c_edit, d),
            )
            if order is not None:  # computed in the kernel's sorted order: reorder on the way
                for n, v in values.items():
                    _store(extra[n][:, d], v, order)
    return LayerRecord(
        h=h,
        h0=_unsort(h0, order, 0),  # type: ignore[arg-type]
        hn=_unsort(run.hn.transpose(0, 1), order, 0),  # type: ignore[arg-type]
        c0=_unsort(c0, order, 0),
        cn=_unsort(run.cn.transpose(0, 1) if run.cn is not None else None, order, 0),
        lengths=_unsort(lengths, order, 0),  # type: ignore[arg-type]
        extra=extra,
        shared=shared,
        state_in=call.state_in,
        state_out=call.state_out,
    )


def _for_direction(
    c_edit: Callable[[int, int, Tensor], Tensor] | None, d: int
) -> Callable[[int, Tensor], Tensor] | None:
    if c_edit is None:
        return None
    return lambda t, c: c_edit(d, t, c)


def cell_internals(call: CellCall, names: tuple[str, ...]) -> LayerRecord:
    """The record of one cell step (T = 1), with the requested internals."""
    extra: dict[str, Tensor] = {}
    wanted = [n for n in names if n in kind_spec(call.kind).internals]
    if wanted:
        dtype = call.h.dtype  # the dtype the kernel ran in (autocast may differ from the inputs')
        w_ih, w_hh = call.weights[0].to(dtype), call.weights[1].to(dtype)
        b_ih, b_hh = (b.to(dtype) if b is not None else None for b in call.weights[2:])
        parts = layer_internals(
            call.kind, call.input.unsqueeze(0).to(dtype), call.h.unsqueeze(0), call.h_prev.to(dtype),
            call.c_prev.to(dtype) if call.c_prev is not None else None,
            DirectionWeights(w_ih, w_hh, b_ih, b_hh, None), names=wanted,
        )
        extra = {n: v.reshape(v.shape[1], 1, 1, -1) for n, v in parts.items()}
        if "c" in extra and call.c is not None:
            extra["c"] = call.c.clone().reshape(call.c.shape[0], 1, 1, -1)  # the kernel's own
    return step_record(call.h_prev, call.c_prev, call.h, call.c, extra)


def step_record(h_prev: Tensor, c_prev: Tensor | None, h: Tensor, c: Tensor | None,
                extra: dict[str, Tensor]) -> LayerRecord:
    """The record of one step of a cell from the (detached) states it received and returned,
    each ``(N, W)``; ``extra`` holds its internals, ``(N, 1, 1, W)``."""
    h_rec = h.clone().reshape(h.shape[0], 1, 1, -1)
    return LayerRecord(
        h=h_rec,
        h0=h_prev.clone().unsqueeze(1),
        hn=h_rec[:, :, 0],
        c0=c_prev.clone().unsqueeze(1) if c_prev is not None else None,
        cn=c.clone().unsqueeze(1) if c is not None else None,
        lengths=torch.ones(h.shape[0], dtype=torch.int64),
        extra=extra,
        state_in=(h_prev, c_prev) if c_prev is not None else (h_prev,),
        state_out=(h, c) if c is not None else (h,),
    )
