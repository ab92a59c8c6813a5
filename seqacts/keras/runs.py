"""What one re-run call holds: each cell's states and internals, and the step mask.

Every array is ``(sample, time, unit)`` in the *input's* time order (a backward run's step
``t`` is the state after reading ``x_t``); the backends' loops (:mod:`seqacts.keras.unroll`,
:mod:`seqacts.keras.unroll_jax`) build them with :func:`cell_run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..kinds import has_cell_state
from ..kinds.keras_kinds import CELL_KINDS, KERNEL_ORDER
from .gates import gate_values

__all__ = ["CellRun", "LayerRun", "cell_run", "numpy_of"]


@dataclass
class CellRun:
    """One cell's values over one call, ``(sample, time, unit)`` in input-time order."""

    h: np.ndarray
    h0: np.ndarray  # (sample, unit)
    hn: np.ndarray
    c0: np.ndarray | None = None
    cn: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class LayerRun:
    """One direction of one call: each cell's run, the step mask and the visible output."""

    cells: list[CellRun]
    mask: np.ndarray  # (sample, time) bool, input-time order
    output: Any  # what the layer returns as its first output, recomputed (backend tensor)


def numpy_of(t: Any) -> np.ndarray:
    """A backend tensor as a NumPy array."""
    from keras import ops

    return np.asarray(ops.convert_to_numpy(t))


def cell_run(cell: Any, x_seq: Any, h_seq: Any, c_seq: Any, start: list[Any],
             internals: tuple[str, ...], backwards: bool) -> CellRun:
    """One cell's run from its per-step inputs, ``h`` and ``c`` (sample, time, unit), in
    processing order, and the states it started from."""
    from keras import ops

    kind = CELL_KINDS[type(cell).__name__]
    extra: dict[str, Any] = {}
    cell_state = has_cell_state(kind)
    wanted = [n for n in internals if n in KERNEL_ORDER[kind] or (n == "c" and cell_state)]
    if c_seq is not None and "c" in wanted:
        extra["c"] = c_seq
    gates = [n for n in wanted if n != "c"]
    if gates:
        h_prev = ops.concatenate([ops.expand_dims(start[0], 1), h_seq[:, :-1]], axis=1)
        extra.update({k: v for k, v in gate_values(cell, kind, x_seq, h_prev).items()
                      if k in gates})

    def forward_time(t: Any) -> np.ndarray:
        a = numpy_of(t)
        return a[:, ::-1] if backwards else a

    return CellRun(
        h=forward_time(h_seq), h0=numpy_of(start[0]), hn=numpy_of(h_seq[:, -1]),
        c0=numpy_of(start[1]) if cell_state else None,
        cn=numpy_of(c_seq[:, -1]) if c_seq is not None else None,
        extra={name: np.ascontiguousarray(forward_time(v)) for name, v in extra.items()},
    )
