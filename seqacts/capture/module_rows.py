"""Which sample rows each call of a ``modules=`` output belongs to.

In a group whose layers hold one chain each (every plain ``model(x)``), every call of a module
is placed from row 0, one ``<path>.call`` per call. In a group with several chains (``loss()``
called twice, a model that is itself an RNN called twice, ...) the chains take rows of their
own, and a module call is placed in the rows of one chain only when that is provable:

* its *episode* is the recorded kernel calls next to it: for a module whose first call in the
  group came before any kernel call (an embedding run before its RNN), those from this call up
  to the module's next call (or the end of the group); for any other module (a head run on the
  RNN's output), those from the module's previous call (or the start of the group) up to this
  call;
* of the row blocks of the chains those kernel calls went to, exactly one must have as many
  rows as the output's first axis (or, when none has, its second: a time-major output).

A call placed in a chain's rows takes that chain's next ``<path>.call``; a call that cannot be
placed is left NaN and reported (:func:`unplaced_message`), never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from .chains import Layout

__all__ = ["Piece", "Unplaced", "place_outputs", "unplaced_message"]

Piece = tuple[int | None, Tensor]  # first row (None: not placed, kept for its shape), output


@dataclass(frozen=True)
class Unplaced:
    """A module output's call (counted from 0 in its group) that no chain's rows provably hold."""

    key: str
    call: int
    reason: str


def place_outputs(
    layout: Layout,
    trace: Sequence[tuple[str, int]],
    outputs: dict[str, list[Tensor]],
    positions: dict[str, list[int]],
) -> tuple[dict[str, list[list[Piece]]], list[Unplaced]]:
    """Each module output's calls as ``<path>.call`` slots of pieces placed at their rows.

    Parameters
    ----------
    layout : Layout
        The group's rows (:func:`seqacts.capture.chains.lay_out`).
    trace : sequence of (str, int)
        The group's kernel calls in order: layer label and the index of the chain it went to.
    outputs : dict
        Output name -> its tensors, one per call, in order.
    positions : dict
        Output name -> per call, how many kernel calls of ``trace`` came before it.

    Returns
    -------
    slots : dict
        Output name -> per ``<path>.call``, the pieces ``(first row, tensor)`` it holds.
    unplaced : list of Unplaced
        The calls left NaN because no chain's rows provably hold them.
    """
    if layout.plain or not trace:
        return {key: [[(0, t)] for t in ts] for key, ts in outputs.items()}, []
    slots: dict[str, list[list[Piece]]] = {}
    unplaced: list[Unplaced] = []
    for key, tensors in outputs.items():
        pos = positions[key]
        before = pos[0] > 0
        taken: dict[int, int] = {}  # a row block's start -> calls placed in it so far
        out: list[list[Piece]] = []
        for k, t in enumerate(tensors):
            if before:
                episode = trace[pos[k - 1] if k else 0 : pos[k]]
            else:
                episode = trace[pos[k] : pos[k + 1] if k + 1 < len(pos) else len(trace)]
            blocks = sorted({layout.rows[label][i] for label, i in episode})
            fits = _fits(t, blocks)
            if len(fits) != 1:
                unplaced.append(Unplaced(key, k, _reason(t, blocks, len(fits), before)))
                _slot(out, 0).append((None, t))
                continue
            start, piece = fits[0]
            slot = taken.get(start, 0)
            taken[start] = slot + 1
            _slot(out, slot).append((start, piece))
        slots[key] = out
    return slots, unplaced


def _slot(slots: list[list[Piece]], i: int) -> list[Piece]:
    while len(slots) <= i:
        slots.append([])
    return slots[i]


def _fits(t: Tensor, blocks: list[tuple[int, int]]) -> list[tuple[int, Tensor]]:
    """The row blocks whose row count is ``t``'s first axis; when none, its second (a
    time-major output, transposed to put the batch first)."""
    first = [(start, t) for start, n in blocks if t.dim() and t.shape[0] == n]
    if first or t.dim() < 2:
        return first
    return [(start, t.transpose(0, 1)) for start, n in blocks if t.shape[1] == n]


def _reason(t: Tensor, blocks: list[tuple[int, int]], n_fits: int, before: bool) -> str:
    where = ("since its previous call (or the group's start)" if before
             else "between this call and its next call (it runs before them)")
    if not blocks:
        return f"no recorded layer ran {where}"
    sizes = ", ".join(str(n) for _, n in blocks)
    shape = "x".join(map(str, t.shape)) or "scalar"
    if n_fits == 0:
        return f"its output ({shape}) has no axis of the row count of the chains that ran {where} ({sizes})"
    return f"{n_fits} chains of its batch size ran {where} ({sizes} rows): which one it belongs to cannot be told"


def unplaced_message(unplaced: list[Unplaced], group: int, first: int, last: int) -> list[str]:
    """One message per module output with calls left NaN in a group (samples ``first..last``)."""
    by_key: dict[str, list[Unplaced]] = {}
    for u in unplaced:
        by_key.setdefault(u.key, []).append(u)
    messages = []
    for key, items in by_key.items():
        reasons = "; ".join(f"call {u.call}: {u.reason}" for u in items[:4])
        more = f"; ... ({len(items)} calls)" if len(items) > 4 else ""
        messages.append(
            f"seqacts: module output {key!r} in group {group} (samples {first}..{last}), which "
            f"holds several chains of calls: {reasons}{more}. These calls were left NaN rather "
            "than placed in rows they may not belong to; run one model(...) call per batch, or "
            "match the module's calls to rows with the layers' call coordinate (README, "
            "'Other modules')"
        )
    return messages
