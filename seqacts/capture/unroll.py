"""Recompute a recurrent layer's per-timestep internals from what its fused kernel returned.

The fused kernels return only ``h``. Because ``h_{t-1}`` is then known for every step (``h``
shifted by one, ``h_0`` at the sequence's first step), each gate's pre-activation over the
whole sequence is an affine map of the rows ``[x_t, h_{t-1}]`` (``rows.py``); only the LSTM
cell state needs a scan, ``c_t = f_t * c_{t-1} + i_t * g_t``, elementwise and cheap. When the
kernel's own gates are at hand (``workspace.py``), :func:`lstm_internals_from_gates` lays them
out and runs the same scan.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import torch
from torch import Tensor

from ..errors import UnrollError
from ..kinds import base_kind, kind_spec
from ..kinds.builtin import LSTM, STACK_KINDS
from ..schema import INTERNAL_ACTIVATION
from .rows import Rows, batched, empty
from .specs import DirectionWeights

__all__ = ["UnrollError", "empty", "layer_internals", "lstm_internals_from_gates"]


#: The kinds whose equations this module implements: PyTorch's stacks (and the cells that
#: follow them, by their base kind).
UNROLLS: dict[str, tuple[str, ...]] = {k.name: k.internals for k in STACK_KINDS}

#: Variables that need other gates: the cell state needs i, f, g; GRU's new gate needs r.
NEEDS: dict[str, tuple[str, ...]] = {
    "c": ("input_gate", "forget_gate", "cell_gate"),
    "new_gate": ("reset_gate", "new_gate"),
}

#: The in-place tensor method applying each gate's activation (None: kept as is).
INPLACE_ACTIVATION: dict[str, str | None] = {
    name: f"{act}_" if act else None for name, act in INTERNAL_ACTIVATION.items()
}


def layer_internals(
    kind: str,
    x: Tensor,
    h: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    weights: DirectionWeights,
    *,
    lengths: Tensor | None = None,
    reverse: bool = False,
    names: Collection[str] | None = None,
    out: Mapping[str, Tensor] | None = None,
    c_edit: Callable[[int, Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Per-timestep internals of one direction of one recurrent layer, without a step loop.

    Parameters
    ----------
    kind
        ``"LSTM"``, ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"``; ``"LSTMCell"`` and ``"GRUCell"``
        are accepted as their stack kinds (map ``RNNCell`` with ``seqacts.schema.base_kind``).
    x
        The direction's input, time-major, dims ``(time, batch, input)``.
    h
        Its output as the kernel returned it, dims ``(time, batch, out)``: ``h[t]`` is the
        state after consuming step ``t`` in either direction (PyTorch's ``output[..., H:]``
        alignment for the backward direction).
    h0, c0
        Initial states, dims ``(batch, out)`` and ``(batch, hidden)``; ``c0`` only for LSTM
        (needed when ``"c"`` is requested).
    weights
        The direction's weights as PyTorch stores them; biases ``None`` for ``bias=False``;
        ``w_hr`` the LSTM projection when ``proj_size > 0`` (then ``out = proj_size``), only
        checked: ``h`` is already projected, and the gates need nothing else from it.
    lengths
        Valid steps per sample, dims ``(batch,)``, each in ``1..time`` (not checked, to spare a
        device sync); ``None`` when all steps are valid. Values of ``x`` and ``h`` at
        ``t >= length`` never reach valid positions.
    reverse
        The backward direction: each sample runs from ``t = length - 1`` (from ``h0``, ``c0``)
        down to ``t = 0``.
    names
        Variables to compute, from the kind's internals; default all. Only what they need is
        computed (``"forget_gate"`` alone is one matmul with a quarter of the weights, no scan).
    out
        Where to write, one tensor per requested name, dims ``(batch, time, hidden)`` in ``x``'s
        dtype and device, any strides (e.g. a slot of a sample-major dataset buffer); these
        are then returned. Default: fresh time-major tensors.
    c_edit
        ``c_edit(t, c_t)`` -> the cell state the layer carried on from step ``t`` (dims
        ``(batch, hidden)``), for a layer whose cell state was edited inside the recurrence
        (``seqacts.ablate(..., state="c")``); the scan continues from the edited value.

    Returns
    -------
    dict[str, Tensor]
        One tensor per requested name, in the order asked, in ``x``'s dtype and device, NaN at
        ``t >= length``, with no autograd graph: ``out``'s tensors, else fresh contiguous ones
        with dims ``(time, batch, hidden)``.
    """
    base = base_kind(kind)
    wanted = _check_names(base, names)
    with torch.no_grad():
        _check_shapes(base, x, h, (h0, c0), weights, lengths, "c" in wanted)
        fresh, dest = _destinations(base, wanted, out, x, weights.w_ih.shape[0])
        if x.shape[0] == 0:
            return fresh
        gates = _gates(base, wanted, dest, Rows(x, h, h0, lengths, reverse), weights)
        invalid = _invalid_steps(lengths, x)
        if "c" in wanted:
            assert c0 is not None  # checked in _check_shapes
            _cell_scan(gates, dest["c"], c0.to(x), invalid if reverse else None, reverse, c_edit)
        if invalid is not None:
            for n in wanted:
                dest[n].masked_fill_(invalid, float("nan"))
        return fresh


def lstm_internals_from_gates(
    gates: Tensor,
    c0: Tensor | None,
    *,
    out: Mapping[str, Tensor],
    names: Collection[str] | None = None,
    reverse: bool = False,
) -> None:
    """An LSTM direction's internals from the post-activation gates its kernel computed.

    Parameters
    ----------
    gates
        Dims ``(step, batch, 4 * hidden)``, any strides, gates i, f, g, o along the last dim,
        steps in the order the kernel ran them: time reversed when ``reverse``.
    c0
        The initial cell state, dims ``(batch, hidden)``; needed for ``"c"``.
    out
        Where to write, one tensor per requested name, dims ``(batch, time, hidden)``, any
        strides, in ``gates``' dtype.
    names
        Variables from the LSTM kind's internals; default all.
    reverse
        The backward direction.
    """
    wanted = _check_names(LSTM.name, names)
    steps, batch, width = gates.shape
    hidden = width // len(LSTM.gates)
    chunks = LSTM.gates
    _check_out(LSTM.name, wanted, out, (batch, steps, hidden), gates)
    if "c" in wanted and c0 is None:
        raise UnrollError(
            f"LSTM: the cell state 'c' needs c0; pass zeros of shape ({batch}, {hidden})"
        )
    part = {g: gates[..., j * hidden : (j + 1) * hidden] for j, g in enumerate(chunks)}
    with torch.no_grad():
        backwards = torch.arange(steps - 1, -1, -1, device=gates.device) if reverse else None
        for n in wanted:
            if n == "c":
                continue
            dest = out[n].transpose(0, 1)  # (time, batch, hidden) view of the destination
            if backwards is None:
                dest.copy_(part[n])
            else:
                dest.index_copy_(0, backwards, part[n])
        if "c" in wanted:
            assert c0 is not None
            i, f, g = part["input_gate"], part["forget_gate"], part["cell_gate"]
            if not reverse:
                in_time = {n: v.transpose(0, 1) for n, v in part.items()}  # (batch, time, hidden)
                _cell_scan(in_time, out["c"], c0.to(gates), None, False)
                return
            # c_t = f_t * c_{t-1} + i_t * g_t in the kernel's step order, each step written into
            # its time slot of the destination (a whole-sequence i * g would need the time flipped).
            cs, prev = out["c"].unbind(1), c0.to(gates)
            for s in range(steps):
                c = cs[steps - 1 - s]
                torch.mul(f[s], prev, out=c).addcmul_(i[s], g[s])
                prev = c


def _check_names(kind: str, names: Collection[str] | None) -> tuple[str, ...]:
    if kind not in UNROLLS:
        raise UnrollError(
            f"layer_internals: unknown kind {kind!r}; expected one of {', '.join(UNROLLS)} "
            "(or a kind following their equations, e.g. LSTMCell; map RNNCell with "
            "seqacts.schema.base_kind)"
        )
    if names is None:
        return UNROLLS[kind]
    wanted = (names,) if isinstance(names, str) else tuple(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in UNROLLS[kind]]
    if unknown:
        raise UnrollError(
            f"layer_internals: {kind} has no variable {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(UNROLLS[kind])}"
        )
    return wanted


def _gate_order(kind: str) -> tuple[str, ...]:
    return kind_spec(kind).gates


def _check_shapes(
    kind: str,
    x: Tensor,
    h: Tensor,
    states: tuple[Tensor, Tensor | None],
    weights: DirectionWeights,
    lengths: Tensor | None,
    needs_c0: bool,
) -> None:
    """Check every tensor's shape against ``x``'s, ``h``'s and the weights'; ``states``: h0, c0."""
    h0, c0 = states
    for name, t in (("x", x), ("h", h)):
        if t.dim() != 3:
            raise UnrollError(
                f"{kind}: Expected {name} to be 3D (time, batch, features), got {t.dim()}D instead"
            )
    steps, batch, n_in = x.shape
    n_out = h.shape[2]
    n_gates = len(_gate_order(kind))
    hidden = weights.w_ih.shape[0] // n_gates
    expected = {
        "h": ((steps, batch, n_out), h.shape),
        "h0": ((batch, n_out), h0.shape),
        "w_ih": ((n_gates * hidden, n_in), weights.w_ih.shape),
        "w_hh": ((n_gates * hidden, n_out), weights.w_hh.shape),
    }
    if weights.w_hr is not None:
        expected["w_hr"] = ((n_out, hidden), weights.w_hr.shape)
    if needs_c0:
        if c0 is None:
            raise UnrollError(
                f"{kind}: the cell state 'c' needs c0; pass zeros of shape ({batch}, {hidden})"
            )
        expected["c0"] = ((batch, hidden), c0.shape)
    if lengths is not None:
        expected["lengths"] = ((batch,), lengths.shape)
    for name, (want, got) in expected.items():
        if tuple(got) != want:
            raise UnrollError(
                f"{kind}: Expected {name} of shape {want} (from x {tuple(x.shape)}, h "
                f"{tuple(h.shape)}, w_ih {tuple(weights.w_ih.shape)}), got {tuple(got)}"
            )


def _check_out(
    kind: str, wanted: tuple[str, ...], out: Mapping[str, Tensor], shape: tuple[int, ...], x: Tensor
) -> None:
    missing = [n for n in wanted if n not in out]
    if missing:
        raise UnrollError(
            f"{kind}: out has no tensor for {', '.join(map(repr, missing))}; pass one "
            f"of shape {shape} (batch, time, hidden) per requested name"
        )
    for n in wanted:
        t = out[n]
        if tuple(t.shape) != shape or t.dtype != x.dtype or t.device != x.device:
            raise UnrollError(
                f"{kind}: Expected out[{n!r}] of shape {shape} (batch, time, hidden), "
                f"{x.dtype} on {x.device}, got {tuple(t.shape)} {t.dtype} on {t.device}"
            )


def _destinations(
    kind: str,
    wanted: tuple[str, ...],
    out: Mapping[str, Tensor] | None,
    x: Tensor,
    gate_rows: int,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """What to return, and where to write: ``(batch, time, hidden)`` views of it, any strides."""
    hidden = gate_rows // len(_gate_order(kind))
    if out is None:
        fresh = {n: empty((x.shape[0], x.shape[1], hidden), x) for n in wanted}
        return fresh, {n: v.transpose(0, 1) for n, v in fresh.items()}
    _check_out(kind, wanted, out, (x.shape[1], x.shape[0], hidden), x)
    return {n: out[n] for n in wanted}, dict(out)


def _gates(
    kind: str,
    wanted: tuple[str, ...],
    dest: dict[str, Tensor],
    rows: Rows,
    weights: DirectionWeights,
) -> dict[str, Tensor]:
    """The post-activation gates the ``wanted`` variables need, each written into ``dest``.

    Everything runs on ``(batch, time, ...)`` views, so a sample-major destination needs no
    transposing copy: each gate is one batched matmul written straight into its destination.
    A gate that is not wanted itself gets a scratch buffer, except that the cell state's
    destination holds the input gate's values when ``i`` is not wanted (the scan builds ``c``
    over them).
    """
    x = rows.inputs
    batch, steps = x.shape[:2]
    chunks = _gate_order(kind)
    hidden = weights.w_ih.shape[0] // len(chunks)
    needed = [g for g in chunks if any(g in NEEDS.get(n, (n,)) for n in wanted)]
    if "c" in wanted and "input_gate" not in wanted:
        dest["input_gate"] = dest["c"]

    def block(w: Tensor, j: int) -> Tensor:
        return w[j * hidden : (j + 1) * hidden].to(x)

    # One matmul per gate rather than one over all gates: each gate then lands in its own
    # contiguous buffer, where the elementwise activations run much faster than on column
    # slices of a (rows, 4H) buffer.
    gates: dict[str, Tensor] = {}
    for g in needed:
        j = chunks.index(g)
        b_x = block(weights.b_ih, j) if weights.b_ih is not None else None
        b_h = block(weights.b_hh, j) if weights.b_hh is not None else None
        target = dest[g] if g in dest else empty((batch, steps, hidden), x)
        if g == "new_gate":
            # GRU keeps the halves apart: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
            rows.hidden_affine(target, block(weights.w_hh, j), b_h).mul_(gates["reset_gate"])
            if b_x is not None:
                target.add_(b_x)
            gates[g] = target.baddbmm_(rows.inputs, batched(block(weights.w_ih, j), batch)).tanh_()
            continue
        bias = b_x + b_h if b_x is not None and b_h is not None else b_x if b_x is not None else b_h
        gates[g] = rows.affine(target, block(weights.w_ih, j), block(weights.w_hh, j), bias)
        act = INPLACE_ACTIVATION[g]
        if act is not None:
            getattr(gates[g], act)()
    return gates


def _invalid_steps(lengths: Tensor | None, x: Tensor) -> Tensor | None:
    """Where ``t >= length``, dims ``(batch, time, 1)``; ``None`` when every step is valid."""
    if lengths is None:
        return None
    t = torch.arange(x.shape[0], device=x.device).unsqueeze(0)
    return (t >= lengths.to(x.device).unsqueeze(1)).unsqueeze(2)


def _cell_scan(
    gates: dict[str, Tensor],
    c: Tensor,
    c0: Tensor,
    invalid: Tensor | None,
    reverse: bool,
    c_edit: Callable[[int, Tensor], Tensor] | None = None,
) -> None:
    """``c_t = f_t * c_{t-1} + i_t * g_t`` over time, into ``c``, dims ``(batch, time, hidden)``.

    ``c`` may be the input gate's own buffer (when the caller does not want ``i``).
    """
    i, g, forget = gates["input_gate"], gates["cell_gate"], gates["forget_gate"]
    if c is i:
        c.mul_(g)
    else:
        torch.mul(i, g, out=c)
    if invalid is not None:
        # Backward runs start at each sample's own last step: past it, holding c at c0
        # (f = 1, i * g = 0) makes one scan from t = T - 1 start every sample from c0.
        c.masked_fill_(invalid, 0.0)
        forget.masked_fill_(invalid, 1.0)
    # An in-place addcmul_ per step on per-step views: the cheapest scan measured (about 13 us
    # a step for 64 x 256 on one core; under 2% of the matmuls' time).
    cs, fs = c.unbind(1), forget.unbind(1)
    prev = c0
    for t in range(len(cs) - 1, -1, -1) if reverse else range(len(cs)):
        cs[t].addcmul_(fs[t], prev)
        if c_edit is not None:
            edited = c_edit(t, cs[t])
            # before a backward run's start the scan holds c0 there: leave it
            cs[t].copy_(edited if invalid is None else torch.where(invalid[:, t], cs[t], edited))
        prev = cs[t]
