"""Which sample rows each call of a ``modules=`` output belongs to.

In a group whose layers hold one chain each (every plain ``model(x)``), every call of a module
is placed from row 0, one ``<path>.call`` per call. In a group with several chains (``loss()``
called twice, a model that is itself an RNN called twice, ...) the chains take rows of their
own, and a module call is placed in the rows of one chain only when that is provable. The
proof is data flow where there is any, else the order of calls and the batch sizes:

* *data flow* (proven): the call's output is the very storage a later recorded kernel call
  took as its input (an embedding feeding an RNN), or one of its inputs is the storage an
  earlier kernel call returned (a head on the RNN's output, also on a view of it such as
  ``out[:, -1]``). Storages are compared only while both tensors are alive (:class:`Flow`
  keeps them), so a reused address never links. When these links name one chain, the call
  goes to its rows if the output has an axis of their row count; when they name several
  chains, it is left NaN;
* *order and size* (only without any link): the call's *episode* is the recorded kernel calls
  next to it: for a module whose first call in the group came before any kernel call (an
  embedding run before its RNN), those from this call up to the module's next call (or the
  end of the group); for any other module (a head run on the RNN's output), those from the
  module's previous call (or the start of the group) up to this call. Of the row blocks of
  the chains those kernel calls went to, exactly one must have as many rows as the output's
  first axis (or, when none has, its second: a time-major output). This rests on the order
  alone: a module fed by a copy of one chain's output but run next to another chain of the
  same size would be placed with that other chain.

A call placed in a chain's rows takes that chain's next ``<path>.call``; a call that cannot be
placed is left NaN and reported (:func:`unplaced_message`), never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from torch import Tensor

from .chains import Layout

__all__ = ["Flow", "Piece", "Storage", "Unplaced", "mixed_rows_message", "place_outputs", "storage_of",
           "unplaced_message"]

Piece = tuple[int | None, Tensor]  # first row (None: not placed, kept for its shape), output
Storage = tuple[str, int]  # a tensor's device and the address of its storage


def storage_of(t: Tensor) -> Storage | None:
    """The device and storage address of ``t`` (shared by all its views); None when it has none.

    Parameters
    ----------
    t : torch.Tensor
        Any tensor.

    Returns
    -------
    tuple of (str, int) or None
        ``(device, address)``; None for an empty storage or a tensor without one.
    """
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None
    return (str(t.device), ptr) if ptr else None


@dataclass
class Flow:
    """Where the group's tensors live: each kernel call's input and output storage (in the
    order of the trace), each module call's input storages and output storage, and the
    tensors kept alive so that no compared address is reused during the group."""

    kernels: list[tuple[Storage | None, Storage | None]] = field(default_factory=list)
    calls: dict[str, list[tuple[frozenset[Storage], Storage | None]]] = field(default_factory=dict)
    alive: list[Tensor] = field(default_factory=list)
    _by_storage: tuple[int, dict[Storage, list[int]], dict[Storage, list[int]]] = field(
        default_factory=lambda: (0, {}, {}), init=False, repr=False)

    def _index(self) -> tuple[dict[Storage, list[int]], dict[Storage, list[int]]]:
        """Storage -> the kernel calls that took it as input, and those that returned it."""
        if self._by_storage[0] != len(self.kernels):
            takers: dict[Storage, list[int]] = {}
            makers: dict[Storage, list[int]] = {}
            for i, (x, y) in enumerate(self.kernels):
                if x is not None:
                    takers.setdefault(x, []).append(i)
                if y is not None:
                    makers.setdefault(y, []).append(i)
            self._by_storage = (len(self.kernels), takers, makers)
        return self._by_storage[1], self._by_storage[2]

    def add_kernel(self, x: Tensor | None, out: Tensor) -> None:
        """Note a kernel call's input sequence ``x`` and its output, and keep the output alive."""
        self.kernels.append((None if x is None else storage_of(x), storage_of(out)))
        self.alive.append(out)

    def add_call(self, key: str, inputs: Iterable[Tensor], out: Tensor) -> None:
        """Note a module call's tensor inputs and its output ``out``, and keep ``out`` alive."""
        ins = frozenset(s for s in map(storage_of, inputs) if s is not None)
        self.calls.setdefault(key, []).append((ins, storage_of(out)))
        self.alive.append(out)

    def links(self, key: str, call: int, before: int) -> set[int]:
        """The kernel calls (indices in the trace) that call ``call`` of ``key``, made after
        ``before`` kernel calls, is linked to: later ones that took its output as input,
        earlier ones whose output it took as an input or returns itself (a module wrapping
        the kernel, such as the ``nn.LSTM``)."""
        if key not in self.calls:
            return set()
        ins, out = self.calls[key][call]
        takers, makers = self._index()
        later = {i for i in takers.get(out, []) if i >= before} if out is not None else set()
        earlier = {i for s in ins for i in makers.get(s, []) if i < before}
        wrapped = {i for i in makers.get(out, []) if i < before} if out is not None else set()
        return later | earlier | wrapped


@dataclass(frozen=True)
class Unplaced:
    """A module output's call (counted from 0 in its group) that no chain's rows provably hold:
    left NaN, or (``placed``) placed by order and batch size alone, with no data-flow link."""

    key: str
    call: int
    reason: str
    placed: bool = False


def place_outputs(
    layout: Layout,
    trace: Sequence[tuple[str, int]],
    outputs: dict[str, list[Tensor]],
    positions: dict[str, list[int]],
    flow: Flow | None = None,
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
    flow : Flow, optional
        The storages of the group's kernel and module calls; its links place a call before
        the order-and-size rule does. None: that rule alone.

    Returns
    -------
    slots : dict
        Output name -> per ``<path>.call``, the pieces ``(first row, tensor)`` it holds.
    unplaced : list of Unplaced
        The calls left NaN because no chain's rows provably hold them, and (``placed``) those
        placed by order and batch size alone although data flow was traced.
    """
    if not trace:
        return {key: [[(0, t)] for t in ts] for key, ts in outputs.items()}, []
    if layout.plain:
        return _plain_slots(outputs, layout.n_samples)
    slots: dict[str, list[list[Piece]]] = {}
    unplaced: list[Unplaced] = []
    for key, tensors in outputs.items():
        pos = positions[key]
        before = pos[0] > 0
        taken: dict[int, int] = {}  # a row block's start -> calls placed in it so far
        out: list[list[Piece]] = []
        for k, t in enumerate(tensors):
            linked = flow.links(key, k, pos[k]) if flow is not None else set()
            if linked:
                blocks = sorted({layout.rows[trace[i][0]][trace[i][1]] for i in linked})
                fits = _fits(t, blocks) if len(blocks) == 1 else []
                reason = "" if len(fits) == 1 else _linked_reason(t, blocks)
            else:
                if before:
                    episode = trace[pos[k - 1] if k else 0 : pos[k]]
                else:
                    episode = trace[pos[k] : pos[k + 1] if k + 1 < len(pos) else len(trace)]
                blocks = sorted({layout.rows[label][i] for label, i in episode})
                fits = _fits(t, blocks)
                reason = "" if len(fits) == 1 else _reason(t, blocks, len(fits), before)
            if reason:
                unplaced.append(Unplaced(key, k, reason))
                _slot(out, 0).append((None, t))
                continue
            start, piece = fits[0]
            if not linked and flow is not None:
                unplaced.append(Unplaced(key, k, f"rows {start}..{start + len(piece) - 1}",
                                         placed=True))
            slot = taken.get(start, 0)
            taken[start] = slot + 1
            _slot(out, slot).append((start, piece))
        slots[key] = out
    return slots, unplaced


def _plain_slots(outputs: dict[str, list[Tensor]],
                 n: int) -> tuple[dict[str, list[list[Piece]]], list[Unplaced]]:
    """Each call at ``<path>.call`` = k from row 0 of a one-batch group of ``n`` rows: its
    first axis is the batch, else its second (a time-major output, or a stack's ``h_n`` of
    shape ``(layers * directions, batch, hidden)``: transposed); a call with more rows than
    the batch and no axis of its size is left NaN rather than adding samples of its own."""
    slots: dict[str, list[list[Piece]]] = {}
    unplaced: list[Unplaced] = []
    for key, tensors in outputs.items():
        out: list[list[Piece]] = []
        for k, t in enumerate(tensors):
            if t.dim() > 1 and t.shape[0] != n and t.shape[1] == n:
                out.append([(0, t.transpose(0, 1))])
            elif t.dim() and t.shape[0] > n:
                shape = "x".join(map(str, t.shape))
                unplaced.append(Unplaced(key, k, f"its output ({shape}) has more rows than the "
                                                 f"batch of the recorded layers ({n}) and no "
                                                 "axis of that size"))
                out.append([(None, t)])
            else:
                out.append([(0, t)])
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


def _linked_reason(t: Tensor, blocks: list[tuple[int, int]]) -> str:
    if len(blocks) > 1:
        sizes = ", ".join(str(n) for _, n in blocks)
        return f"its inputs come from several chains ({sizes} rows)"
    shape = "x".join(map(str, t.shape)) or "scalar"
    return (f"its output ({shape}) has no axis of the row count of the chain its data flows "
            f"from or to ({blocks[0][1]})")


def unplaced_message(unplaced: list[Unplaced], group: int, first: int, last: int,
                     plain: bool = False) -> list[str]:
    """One message per module output and kind of note in a group (samples ``first..last``):
    calls left NaN, and calls placed by order and batch size alone. ``plain``: the group is
    one batch (its layers hold one chain each)."""
    by_key: dict[tuple[bool, str], list[Unplaced]] = {}
    for u in unplaced:
        by_key.setdefault((u.placed, u.key), []).append(u)
    messages = []
    for (placed, key), items in sorted(by_key.items(), key=lambda kv: kv[0], reverse=True):
        sep = " in " if placed else ": "
        notes = "; ".join(f"call {u.call}{sep}{u.reason}" for u in items[:4])
        notes += f"; ... ({len(items)} calls)" if len(items) > 4 else ""
        head = (f"seqacts: module output {key!r} in group {group} (samples {first}..{last}), "
                f"which holds {'one batch' if plain else 'several chains of calls'}: {notes}")
        messages.append(head + (_PLACED if placed else _LEFT_NAN))
    return messages


def mixed_rows_message(outputs: dict[str, list[Tensor]], group: int, first: int,
                       last: int) -> list[str]:
    """One message when a group with no recorded layer call (nothing tells its batch) holds
    module outputs whose first axes differ in size: each was placed from row 0 regardless."""
    sizes: dict[int, list[str]] = {}
    for key, tensors in outputs.items():
        for t in tensors:
            if t.dim() and key not in sizes.setdefault(t.shape[0], []):
                sizes[t.shape[0]].append(key)
    if len(sizes) < 2:
        return []
    listed = "; ".join(f"{', '.join(repr(k) for k in keys[:4])}"
                       f"{f' (and {len(keys) - 4} more)' if len(keys) > 4 else ''}: {n}"
                       for n, keys in sorted(sizes.items()))
    return [f"seqacts: module outputs in group {group} (samples {first}..{last}) have first axes "
            f"of different sizes ({listed}) and no recorded layer ran to tell the batch: each "
            "was placed from sample 0 along its first axis, so their rows are not the same "
            "samples (a state of shape (n_states, batch, hidden) has the batch second). Record "
            "the recurrence itself (cells=) so that the batch is known, or keep to outputs with "
            "the batch first (README, 'Other modules')"]


_LEFT_NAN = (". These calls were left NaN rather than placed in rows they may not belong to; run "
             "one model(...) call per batch, or match the module's calls to rows with the "
             "layers' call coordinate (README, 'Other modules')")
_PLACED = (", placed by the order of the calls and the batch size alone: no data flows between "
           "these calls and a recorded layer (a copy, or a mix of outputs), so the placement is "
           "not proven. Check it with the layers' call coordinate, or run one model(...) call "
           "per batch (README, 'Other modules')")
