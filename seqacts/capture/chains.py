"""How calls become samples: link each layer's kernel calls into chains, lay chains out as rows.

A call *continues* an earlier call of the same layer when the initial state it receives is
provably the state that call returned: bitwise equal to its first ``n`` rows (h and, for an
LSTM, c), and, when that state is all zeros (every fresh start's state), the returned tensor
itself or a view of its first rows. A chain's calls follow each other along ``time``; a call that
continues nothing starts a new chain, i.e. new sample rows. Only the last call of each chain can
be continued, so a row that dropped out of a chain never comes back.

Within one group (one call of the root model, or the calls made outside any), chain ``i`` of
every layer is the same samples when every recorded layer has the same sequence of chain row
counts; otherwise every chain gets rows of its own (shared only by the layers of one stack that
chained alike) and the group carries a note (the recorder warns with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .records import LayerRecord

__all__ = ["Chain", "Linker", "Placement", "Layout", "lay_out"]


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


class Linker:
    """Each layer's chains within one group, built one record at a time as calls arrive."""

    def __init__(self) -> None:
        self.chains: dict[str, list[Chain]] = {}
        self.n_calls: dict[str, int] = {}

    def add(self, label: str, rec: LayerRecord) -> None:
        call = self.n_calls.get(label, 0)
        self.n_calls[label] = call + 1
        chains = self.chains.setdefault(label, [])
        chain = _continued(chains, rec)
        if chain is None:
            chain = Chain(first_call=call)
            chains.append(chain)
        else:
            chain.records[-1].state_out = ()  # no longer a chain's end: nothing can continue it
        rec.state_in = ()
        chain.records.append(rec)
        chain.calls.append(call)
        chain.tail_key = _first_row(rec.hn)

    def release(self) -> None:
        """Drop the kernel's state tensors kept for linking (the group is complete)."""
        for chains in self.chains.values():
            for chain in chains:
                chain.records[-1].state_out = ()


def _continued(chains: list[Chain], rec: LayerRecord) -> Chain | None:
    """The chain whose last call returned the state ``rec`` started from, most recent first."""
    n = rec.h0.shape[0]
    if not chains or n == 0:
        return None
    key = _first_row(rec.h0)
    fresh: bool | None = None  # whether rec's initial state is all zeros, computed when needed
    for chain in reversed(chains):
        prev = chain.records[-1]
        if chain.tail_key != key or prev.hn.shape[0] < n or prev.hn.shape[1:] != rec.h0.shape[1:]:
            continue
        if not (_equal_prefix(rec.h0, prev.hn) and _equal_prefix(rec.c0, prev.cn)):
            continue  # also when the returned tensor was modified in place before being passed
        if _same_memory(rec.state_in, prev.state_out):
            return chain
        if fresh is None:
            fresh = not bool(rec.h0.any()) and (rec.c0 is None or not bool(rec.c0.any()))
        if not fresh:  # zeros are every fresh start's state: only identity proves a continuation
            return chain
    return None


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

    @property
    def plain(self) -> bool:
        """One chain per layer, aligned: the rows are simply the samples of one batch."""
        return self.note is None and bool((self.call <= 0).all())


def lay_out(labels: list[str], linker: Linker, modules: dict[str, str] | None = None) -> Layout:
    """Assign every chain of every layer its sample rows (see the module docstring).

    ``modules`` maps a layer's label to its module's path: when the layers cannot all be
    aligned, the layers of one stack whose chains have the same row counts still share rows.
    """
    modules = modules or {}
    counts = {label: [c.rows for c in linker.chains[label]] for label in labels
              if linker.chains.get(label)}
    aligned = len({tuple(v) for v in counts.values()}) <= 1
    starts: dict[str, list[int]] = {}
    n_samples = 0
    if aligned:
        seq = next(iter(counts.values()), [])
        shared = [int(s) for s in np.cumsum([0, *seq])[:-1]]
        starts = {label: shared for label in counts}
        n_samples = int(sum(seq))
    else:  # the layers of one stack run in the same calls: they share rows when they chain alike
        shared_by: dict[tuple[str, tuple[int, ...]], list[int]] = {}
        for label, rows in counts.items():
            key = (modules.get(label, label), tuple(rows))
            if key not in shared_by:
                shared_by[key] = [n_samples + int(s) for s in np.cumsum([0, *rows])[:-1]]
                n_samples += int(sum(rows))
            starts[label] = shared_by[key]
    call = np.full((n_samples, len(labels)), -1, dtype=np.int64)
    call_row = np.full((n_samples, len(labels)), -1, dtype=np.int64)
    placements: dict[str, list[Placement]] = {}
    for li, label in enumerate(labels):
        for chain, start in zip(linker.chains.get(label, []), starts.get(label, []), strict=True):
            n = chain.rows
            call[start : start + n, li] = chain.first_call
            call_row[start : start + n, li] = np.arange(n)
            placements.setdefault(label, []).extend(_place(chain, int(start)))
    note = None
    if not aligned:
        note = ", ".join(f"{label} {_counts(rows)}" for label, rows in counts.items())
    n_calls = np.array([linker.n_calls.get(label, 0) for label in labels], dtype=np.int64)
    return Layout(n_samples, placements, call, call_row, n_calls, note)


def _place(chain: Chain, start: int) -> list[Placement]:
    """Each record of a chain after the valid steps its rows already have (a prefix per row)."""
    done = np.zeros(chain.rows, dtype=np.int64)
    out = []
    for i, rec in enumerate(chain.records):
        n = rec.h.shape[0]
        before = done[:n]
        offset: int | np.ndarray = int(before[0]) if (before == before[0]).all() else before.copy()
        out.append(Placement(rec, start, offset, first=i == 0))
        done[:n] += rec.lengths.numpy()
    return out


def _counts(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:6])) + (f", ... ({len(rows)} chains)" if len(rows) > 6 else "")
    return f"[{shown}]"
