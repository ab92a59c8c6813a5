"""How calls become samples: link each layer's kernel calls into chains, lay chains out as rows.

A call *continues* an earlier call of the same layer when the initial state it receives is
provably the state that call returned: bitwise equal to its first ``n`` rows (h and, for an
LSTM, c), and, when that state is all zeros (every fresh start's state), the returned tensor
itself or a view of its first rows. A chain's calls follow each other along ``time``; a call that
continues nothing starts a new chain, i.e. new sample rows. Only the last call of each chain can
be continued, so a row that dropped out of a chain never comes back.

Within one group (one call of the root model, or the calls made outside any), the layers whose
chains have the same sequence of row counts (the same *layout*) share rows: chain ``i`` of each
of them is the same samples. Each layout gets a row set of its own (a dual-path model whose
layers alternate between B x chunks and B x frames rows gets two), and a group with more than
one layout carries a note (the recorder warns with it).

A layer declared in ``chain=`` (``Linker.declared``) is told, not proven: a call of it that
continues nothing by the rule above continues the layer's most recent chain whose last call
had as many rows, whatever state it received (:mod:`seqacts.capture.declared` records that
state and warns about undeclared step loops that were split).

A call that continues nothing although its initial state is *partly* explained by a returned
state is noted as a :class:`Split` (the recorder warns with :func:`split_messages`): some but
not all of its rows are bitwise the rows a chain's last call returned (``"rows"``); it got an
all-zero state equal to an earlier call's returned one but not that tensor (``"zeros"``); or it
got exactly the state the layer returned in an earlier group (``"root"``). Only calls that
matched no chain are checked, and the rule itself never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .records import LayerRecord

__all__ = ["Chain", "End", "Linker", "Placement", "Layout", "Split", "chain_hint", "lay_out",
           "split_messages"]


@dataclass
class Chain:
    """Calls of one layer that continue each other; its rows are those of its first call."""

    first_call: int  # the first call's index among the layer's calls in the group
    records: list[LayerRecord] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    tail_key: bytes = b""  # the bits of the first row the last call returned: a cheap filter

    @property
    def rows(self) -> int:
        return int(self.records[0].h.shape[0])


@dataclass(frozen=True)
class End:
    """The state a chain's last call returned, kept to recognise it in a later group."""

    key: bytes  # the bits of its first row, as ``Chain.tail_key``
    hn: Tensor
    cn: Tensor | None


@dataclass(frozen=True)
class Split:
    """Why a call that continued nothing started new samples although its state was partly
    explained: ``"rows"``, ``"zeros"`` or ``"root"`` (see the module docstring)."""

    reason: str
    call: int  # the call's index among the layer's calls in the group


class Linker:
    """Each layer's chains within one group, built one record at a time as calls arrive.

    ``earlier`` holds, per layer, the ends of the chains of an earlier group: a call that
    starts from one of them is noted as a ``"root"`` split (it is never linked to it).
    """

    def __init__(self, earlier: dict[str, list[End]] | None = None,
                 declared: frozenset[str] = frozenset()) -> None:
        self.chains: dict[str, list[Chain]] = {}
        self.declared = declared  # layers whose same-size calls are declared consecutive steps
        self.n_calls: dict[str, int] = {}
        self.earlier = earlier or {}
        self.splits: dict[str, list[Split]] = {}
        self.latest: dict[str, Chain] = {}  # the chain each layer's most recent call went to

    def add(self, label: str, rec: LayerRecord) -> int:
        """Link ``rec`` into its layer's chains; returns the index of the chain it went to."""
        call = self.n_calls.get(label, 0)
        self.n_calls[label] = call + 1
        chains = self.chains.setdefault(label, [])
        chain, zero_copy = _continued(chains, rec)
        if chain is None and label in self.declared:
            chain = _same_rows(chains, rec)
        index = len(chains)
        if chain is None:
            reason = "zeros" if zero_copy else _partly_explained(
                rec, self.latest.get(label), self.earlier.get(label, []))
            if reason:
                self.splits.setdefault(label, []).append(Split(reason, call))
            chain = Chain(first_call=call)
            chains.append(chain)
        else:
            chain.records[-1].state_out = ()  # no longer a chain's end: nothing can continue it
            index = next(i for i in range(len(chains) - 1, -1, -1) if chains[i] is chain)
        rec.state_in = ()
        chain.records.append(rec)
        chain.calls.append(call)
        chain.tail_key = _first_row(rec.hn)
        self.latest[label] = chain
        return index

    def release(self) -> None:
        """Drop the kernel's state tensors kept for linking (the group is complete)."""
        for chains in self.chains.values():
            for chain in chains:
                chain.records[-1].state_out = ()

    def ends(self) -> dict[str, list[End]]:
        """Per layer called in this group, the states its chains' last calls returned."""
        return {
            label: [End(c.tail_key, c.records[-1].hn, c.records[-1].cn) for c in chains]
            for label, chains in self.chains.items() if chains
        }


def _continued(chains: list[Chain], rec: LayerRecord) -> tuple[Chain | None, bool]:
    """The chain whose last call returned the state ``rec`` started from, most recent first,
    and, when there is none, whether an all-zero returned state equal to ``rec``'s (but not
    the same tensor) was passed over."""
    n = rec.h0.shape[0]
    if not chains:
        return None, False
    if n == 0:  # an empty batch has no rows to tell by: it continues the latest empty chain
        return (chains[-1] if chains[-1].records[-1].hn.shape[0] == 0 else None), False
    key = _first_row(rec.h0)
    fresh: bool | None = None  # whether rec's initial state is all zeros, computed when needed
    for chain in reversed(chains):
        prev = chain.records[-1]
        if chain.tail_key != key or not _fits(rec.h0, prev.hn):
            continue
        if not (_equal_prefix(rec.h0, prev.hn) and _equal_prefix(rec.c0, prev.cn)):
            continue  # also when the returned tensor was modified in place before being passed
        if _same_memory(rec.state_in, prev.state_out):
            return chain, False
        if fresh is None:
            fresh = _all_zero(rec)
        if not fresh:  # zeros are every fresh start's state: only identity proves a continuation
            return chain, False
    return None, bool(fresh)


def _same_rows(chains: list[Chain], rec: LayerRecord) -> Chain | None:
    """For a layer declared in ``chain=``: the most recent chain whose last call had as many
    rows as ``rec`` and states of its shape (``rec`` continues it whatever state it got)."""
    for chain in reversed(chains):
        prev = chain.records[-1]
        if prev.hn.shape == rec.h0.shape and (prev.cn is None) == (rec.c0 is None):
            return chain
    return None


def _fits(h0: Tensor, hn: Tensor) -> bool:
    """Whether ``h0`` could be the first rows of the returned ``hn`` by shape."""
    return hn.shape[0] >= h0.shape[0] and hn.shape[1:] == h0.shape[1:]


def _all_zero(rec: LayerRecord) -> bool:
    return not bool(rec.h0.any()) and (rec.c0 is None or not bool(rec.c0.any()))


def _partly_explained(rec: LayerRecord, latest: Chain | None, earlier: list[End]) -> str:
    """For a call that continues no chain: ``"root"`` when its state is exactly one an earlier
    group's chain ended with (not all zeros), ``"rows"`` when some but not all of its rows are
    bitwise the rows the layer's latest chain returned (rows of zeros not counted), else ""."""
    n = rec.h0.shape[0]
    if n == 0:
        return ""
    if earlier:
        key = _first_row(rec.h0)
        for end in earlier:
            if (end.key == key and _fits(rec.h0, end.hn) and _equal_prefix(rec.h0, end.hn)
                    and _equal_prefix(rec.c0, end.cn) and not _all_zero(rec)):
                return "root"
    if latest is None:
        return ""
    prev = latest.records[-1]
    if not _fits(rec.h0, prev.hn) or (rec.c0 is None) != (prev.cn is None):
        return ""
    same = _equal_rows(rec.h0, prev.hn)
    nonzero = rec.h0.flatten(1).any(1)
    if rec.c0 is not None and prev.cn is not None:
        same &= _equal_rows(rec.c0, prev.cn)
        nonzero |= rec.c0.flatten(1).any(1)
    if bool(same.all()):
        return ""
    return "rows" if bool((same & nonzero).any()) else ""


def _equal_rows(a: Tensor, b: Tensor) -> Tensor:
    """Per row of ``a``, whether it is bitwise the same row of ``b`` (the first rows)."""
    if a.dtype != b.dtype or a.device != b.device or b.shape[1:] != a.shape[1:]:
        return torch.zeros(a.shape[0], dtype=torch.bool, device=a.device)
    bits = _BITS[a.element_size()]
    return (a.contiguous().view(bits) == b[: a.shape[0]].contiguous().view(bits)).flatten(1).all(1)


def _first_row(t: Tensor) -> bytes:
    """The bits of a state's first row (``t`` is (N, D, H)); b"" for an empty batch."""
    if t.shape[0] == 0:
        return b""
    return t[:1].contiguous().view(_BITS[t.element_size()]).cpu().numpy().tobytes()


def _same_memory(inputs: tuple[Tensor, ...], outputs: tuple[Tensor, ...]) -> bool:
    """Whether every input state is the returned state itself or a view of its leading rows."""
    if not inputs or len(inputs) != len(outputs):
        return False
    return all(_within(a, b) for a, b in zip(inputs, outputs, strict=True))


def _within(a: Tensor, b: Tensor) -> bool:
    if (a.data_ptr() != b.data_ptr() or a.dtype != b.dtype or a.device != b.device
            or a.dim() != b.dim()):
        return False
    return all(
        sa <= sb and (sa == 1 or ta == tb)
        for sa, sb, ta, tb in zip(a.shape, b.shape, a.stride(), b.stride(), strict=True)
    )


_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _equal_prefix(a: Tensor | None, b: Tensor | None) -> bool:
    """Bitwise equality of ``a`` with the first rows of ``b`` (NaN equals the same NaN)."""
    if a is None or b is None:
        return a is None and b is None
    if a.dtype != b.dtype or a.device != b.device:
        return False
    bits = _BITS[a.element_size()]
    return torch.equal(a.contiguous().view(bits), b[: a.shape[0]].contiguous().view(bits))


_SPLIT_TEXT = {
    "rows": (
        "some but not all rows of the initial state are bitwise the rows that an earlier call "
        "of the layer returned (the others were replaced, e.g. reset or reordered, before "
        "being passed on); a call continues another only when all its rows (h and c) are "
        "that state, so these calls started new samples; if they are consecutive steps of the "
        "same rows whatever state they receive (a decay, zoneout, a norm applied to h), "
        "declare it with"
    ),
    "zeros": (
        "the initial state is all zeros, equal to the all-zero state an earlier call returned "
        "but not the same tensor (e.g. a copy made by torch.stack): all-zero states are every "
        "fresh start's state and are linked only when passed on as the same tensor (or a view "
        "of its first rows), so these steps were recorded as separate samples"
    ),
    "root": (
        "the initial state is bitwise the state that the layer returned in an earlier call of "
        "the model, but chains never cross calls of the model (model(...)), so these calls "
        "started new samples; to record such a loop as one sample, run the whole loop inside "
        "one model(...) call (e.g. a wrapper module whose forward runs it)"
    ),
}


def split_messages(splits: dict[str, dict[str, list[int]]]) -> list[str]:
    """One message per kind of :class:`Split`, naming each layer and its calls.

    Parameters
    ----------
    splits : dict
        A layer's label -> reason -> the calls (counted from 0 per layer, as the dataset's
        ``call`` coordinate) that started new samples for that reason.

    Returns
    -------
    list of str
        The messages, in the order rows, zeros, root; empty when nothing was split.
    """
    out = []
    for reason, text in _SPLIT_TEXT.items():
        where = [f"{label} call{'s' if len(calls[reason]) > 1 else ''} "
                 f"{_counts(calls[reason], 'calls')[1:-1]}"
                 for label, calls in splits.items() if calls.get(reason)]
        if where:
            if reason == "rows":
                text += " " + chain_hint([label for label, calls in splits.items()
                                          if calls.get(reason)])
            out.append(f"seqacts: {'; '.join(where)}: {text} (README, 'How calls become samples')")
    return out


def chain_hint(labels: list[str]) -> str:
    """The ``chain=`` option declaring ``labels``' calls steps: ``chain={'cell': 'steps'}``."""
    return "chain={" + ", ".join(f"{label!r}: 'steps'" for label in labels) + "}"


@dataclass
class Placement:
    """Where one record goes in a group's block: rows ``row .. row + n`` from step ``offset``."""

    record: LayerRecord
    row: int
    offset: int | np.ndarray  # one offset for all rows, or one per row (shrinking batches)
    first: bool  # the chain's first call (it gives the rows' initial states)


@dataclass
class Layout:
    """A group's rows: every layer's placements and where each row came from."""

    n_samples: int
    placements: dict[str, list[Placement]]
    call: np.ndarray  # (sample, layer) int64: the chain's first call in the group, -1 if none
    call_row: np.ndarray  # (sample, layer) int64: the row within that call, -1 if none
    n_calls: np.ndarray  # (layer,) int64: calls of each layer in the group
    note: str | None = None  # why the layers' rows could not be aligned
    rows: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # per chain: start, n

    @property
    def plain(self) -> bool:
        """One chain per layer, aligned: the rows are simply the samples of one batch."""
        return self.note is None and bool((self.call <= 0).all())


def lay_out(labels: list[str], linker: Linker) -> Layout:
    """Assign every chain of every layer its sample rows (see the module docstring).

    The layers whose chains have the same sequence of row counts (a *layout*) share rows:
    one row set per layout, in the order the layouts first appear among ``labels``.
    """
    counts = {label: [c.rows for c in linker.chains[label]] for label in labels
              if linker.chains.get(label)}
    starts: dict[str, list[int]] = {}
    n_samples = 0
    # one row set per layout: layers whose chains have the same row counts share samples
    shared_by: dict[tuple[int, ...], list[int]] = {}
    for label, rows in counts.items():
        key = tuple(rows)
        if key not in shared_by:
            shared_by[key] = [n_samples + int(s) for s in np.cumsum([0, *rows])[:-1]]
            n_samples += int(sum(rows))
        starts[label] = shared_by[key]
    aligned = len(shared_by) <= 1
    call = np.full((n_samples, len(labels)), -1, dtype=np.int64)
    call_row = np.full((n_samples, len(labels)), -1, dtype=np.int64)
    placements: dict[str, list[Placement]] = {}
    blocks: dict[str, list[tuple[int, int]]] = {}
    for li, label in enumerate(labels):
        for chain, start in zip(linker.chains.get(label, []), starts.get(label, []), strict=True):
            n = chain.rows
            blocks.setdefault(label, []).append((int(start), n))
            call[start : start + n, li] = chain.first_call
            call_row[start : start + n, li] = np.arange(n)
            placements.setdefault(label, []).extend(_place(chain, int(start)))
    note = None
    if not aligned:
        by_layout: dict[tuple[int, ...], list[str]] = {}
        for label, rows in counts.items():
            by_layout.setdefault(tuple(rows), []).append(label)
        note = "; ".join(f"{_names(names)} {_counts(list(rows), 'chains')}"
                         for rows, names in by_layout.items())
    n_calls = np.array([linker.n_calls.get(label, 0) for label in labels], dtype=np.int64)
    return Layout(n_samples, placements, call, call_row, n_calls, note, blocks)


def _place(chain: Chain, start: int) -> list[Placement]:
    """Each record of a chain after the valid steps its rows already have (a prefix per row)."""
    done = np.zeros(chain.rows, dtype=np.int64)
    steps = 0  # of the chain so far: where a call of an empty batch (no rows to count) goes
    out = []
    for i, rec in enumerate(chain.records):
        n = rec.h.shape[0]
        before = done[:n]
        offset: int | np.ndarray = steps if n == 0 else (
            int(before[0]) if (before == before[0]).all() else before.copy())
        out.append(Placement(rec, start, offset, first=i == 0))
        done[:n] += rec.lengths.numpy()
        steps += rec.h.shape[2]
    return out


def _names(labels: list[str]) -> str:
    shown = ", ".join(labels[:4])
    return shown + (f" (and {len(labels) - 4} more)" if len(labels) > 4 else "")


def _counts(values: list[int], noun: str) -> str:
    shown = ", ".join(map(str, values[:6]))
    return f"[{shown}" + (f", ... ({len(values)} {noun})]" if len(values) > 6 else "]")
