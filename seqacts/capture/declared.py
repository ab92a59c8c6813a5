"""Declared continuation (``chain=``): the state each call received, and step loops left split.

The chain rule (:mod:`seqacts.capture.chains`) links a call to an earlier one only when it
receives the state that call returned. Models that transform the state between steps (GRU-D's
decay ``h * gamma_t``, zoneout, a norm on ``h``) break that proof at every step the transform
changes a value, so without a declaration the layout would follow the transform's values. A
layer named in ``chain=`` has its same-size calls linked as consecutive steps instead; what each
call received is then recorded as ``h_in``/``c_in`` (dims like ``h``) so the transform stays
visible. An undeclared layer whose one-step calls of a constant batch size were split into
several chains although they ran one after another, the later ones from a state that is not a
fresh all-zero one, is reported once (:func:`steps_message`) naming the option.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..errors import LayerSelectionError
from ..schema import RECEIVED_VARS
from .chains import Linker, chain_hint
from .discovery import recurrent_layers, select_layers
from .records import LayerRecord
from .specs import LayerSpec

__all__ = ["RECEIVED", "declared_layers", "received", "step_splits", "steps_message"]

#: The variables of the state each call of a declared layer received: h, and c for an LSTM.
RECEIVED: tuple[str, ...] = RECEIVED_VARS


def received(rec: LayerRecord) -> dict[str, Tensor]:
    """``h_in`` (and ``c_in``) of a record, ``(N, D, T, H)``: the state each direction received,
    at the step that used it (the forward direction's first step, the backward direction's
    last valid step), NaN at the call's other steps (they started from the call's own ``h``)."""
    n, d, t, _ = rec.h.shape
    out = {}
    for name, state in zip(RECEIVED, (rec.h0, rec.c0), strict=True):
        if state is None:
            continue
        values = state.new_full((n, d, t, state.shape[2]), math.nan)
        values[:, 0, 0] = state[:, 0]
        if d == 2:
            rows = torch.nonzero(rec.lengths > 0).flatten()
            last = (rec.lengths[rows] - 1).to(state.device)
            values[rows.to(state.device), 1, last] = state[rows.to(state.device), 1]
        out[name] = values
    return out


def declared_layers(model: nn.Module, chain: Iterable[str] | None,
              specs: list[LayerSpec]) -> frozenset[str]:
    """The recorded layers' labels that ``chain=`` names.

    Raises
    ------
    LayerSelectionError
        For a name matching no layer of ``model``, or layers that are not recorded.
    """
    if chain is None:
        return frozenset()
    try:  # the recorded layers, Python cells (cells=) included
        found = select_layers(model, chain, [(model, list(specs))], option="chain")
    except LayerSelectionError:
        every = select_layers(model, chain, recurrent_layers(model, required=False),
                              option="chain")  # raises for a name that matches no layer at all
        named = {s.label for _, hit in every for s in hit} - {s.label for s in specs}
        raise LayerSelectionError(
            f"chain: {', '.join(sorted(named))} not recorded; chain= names layers among the "
            f"recorded ones: {', '.join(s.label for s in specs)} (or add them to layers=)"
        ) from None
    return frozenset(s.label for _, hit in found for s in hit)


def step_splits(linker: Linker) -> dict[str, list[int]]:
    """Per undeclared layer of a group, the calls (counted per layer in the group) that split a
    loop of one-step calls of a constant batch size into several chains, not told otherwise.

    A call counts when it started a chain after the layer's previous chain ended (no
    interleaving: two sequences stepped in turn are two sets of samples), from a state that is
    not all zeros (a fresh start's state), and no :class:`~seqacts.capture.chains.Split` of the
    same call says why already.
    """
    out: dict[str, list[int]] = {}
    for label, chains in linker.chains.items():
        if label in linker.declared or len(chains) < 2:
            continue
        records = [r for c in chains for r in c.records]
        if any(r.h.shape[2] != 1 or r.h.shape[0] != records[0].h.shape[0] for r in records):
            continue
        if any(b.calls[0] < a.calls[-1] for a, b in zip(chains, chains[1:], strict=False)):
            continue
        told = {s.call for s in linker.splits.get(label, [])}
        calls = [c.first_call for c in chains[1:]
                 if c.first_call not in told and _received_something(c.records[0])]
        if calls:
            out[label] = calls
    return out


def _received_something(rec: LayerRecord) -> bool:
    return bool(rec.h0.any()) or (rec.c0 is not None and bool(rec.c0.any()))


def _listed(calls: list[int]) -> str:
    shown = ", ".join(map(str, calls[:6]))
    return shown + (f", ... ({len(calls)} calls)" if len(calls) > 6 else "")


def steps_message(splits: dict[str, list[int]]) -> str | None:
    """The one warning for :func:`step_splits` over the whole recording (calls counted per
    layer in the dataset, as the ``call`` coordinate), or None when there is nothing to tell."""
    if not splits:
        return None
    where = "; ".join(f"{label} call{'s' if len(calls) > 1 else ''} {_listed(calls)}"
                      for label, calls in splits.items())
    return (
        f"seqacts: {where} started new samples within one model(...) call: the layer was "
        "stepped one call per step over a constant batch size, but the state each of these "
        "calls received was not the one the previous call returned (e.g. a decay, zoneout or "
        "a norm applied to h between steps), so one series' steps lie in several samples, "
        "split where the transform changed the state. If these calls are consecutive steps of "
        f"the same rows, declare it: {chain_hint(list(splits))} (then the state each step "
        "received is recorded as h_in/c_in; README, 'How calls become samples')"
    )
