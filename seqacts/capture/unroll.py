"""Recompute a recurrent layer's per-timestep internals from what its fused kernel returned.

The fused kernels return only ``h``. Because ``h_{t-1}`` is then known for every step (``h``
shifted by one, ``h_0`` at the sequence's first step), each gate's pre-activation over the
whole sequence is one matmul of the stacked rows ``[x_t, h_{t-1}]`` with ``[W_ih, W_hh]``; only
the LSTM cell state needs a scan, ``c_t = f_t * c_{t-1} + i_t * g_t``, elementwise and cheap.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch
from torch import Tensor

from ..errors import UnrollError
from .specs import CELL_BASE_KIND, GATES

__all__ = ["GATES", "UnrollError", "empty", "layer_internals"]


#: Variables that need other gates: the cell state needs i, f, g; GRU's new gate needs r.
NEEDS: dict[str, tuple[str, ...]] = {
    "c": ("input_gate", "forget_gate", "cell_gate"),
    "new_gate": ("reset_gate", "new_gate"),
}

#: The in-place nonlinearity each gate applies to its pre-activation (None: kept as is).
ACTIVATION: dict[str, str | None] = {
    "input_gate": "sigmoid_",
    "forget_gate": "sigmoid_",
    "cell_gate": "tanh_",
    "output_gate": "sigmoid_",
    "reset_gate": "sigmoid_",
    "update_gate": "sigmoid_",
    "new_gate": "tanh_",
    "preactivation": None,
}


def gate_chunks(kind: str) -> tuple[str, ...]:
    """The gates in their order of row chunks in ``weight_ih`` and ``weight_hh``: i,f,g,o; r,z,n."""
    return tuple(n for n in GATES[kind] if n in ACTIVATION)


def layer_internals(
    kind: str,
    x: Tensor,
    h: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    w_hr: Tensor | None = None,
    *,
    lengths: Tensor | None = None,
    reverse: bool = False,
    names: Collection[str] | None = None,
    out: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Per-timestep internals of one direction of one recurrent layer, without a step loop.

    Parameters
    ----------
    kind
        ``"LSTM"``, ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"``; ``"LSTMCell"`` and ``"GRUCell"``
        are accepted as their stack kinds (map ``RNNCell`` with ``specs.base_kind``).
    x
        The direction's input, time-major, dims ``(time, batch, input)``.
    h
        Its output as the kernel returned it, dims ``(time, batch, out)``: ``h[t]`` is the
        state after consuming step ``t`` in either direction (PyTorch's ``output[..., H:]``
        alignment for the backward direction).
    h0, c0
        Initial states, dims ``(batch, out)`` and ``(batch, hidden)``; ``c0`` only for LSTM
        (needed when ``"c"`` is requested).
    w_ih, w_hh, b_ih, b_hh, w_hr
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
        Variables to compute, from ``GATES[kind]``; default all. Only what they need is
        computed (``"forget_gate"`` alone is one matmul with a quarter of the weights, no scan).
    out
        Where to write, one tensor per requested name, dims ``(batch, time, hidden)`` in ``x``'s
        dtype and device, any strides (e.g. a slot of a sample-major dataset buffer); these
        are then returned. Default: fresh time-major tensors.

    Returns
    -------
    dict[str, Tensor]
        One tensor per requested name, in the order asked, in ``x``'s dtype and device, NaN at
        ``t >= length``, with no autograd graph: ``out``'s tensors, else fresh contiguous ones
        with dims ``(time, batch, hidden)``.
    """
    base = CELL_BASE_KIND.get(kind, kind)
    wanted = _check_names(base, names)
    with torch.no_grad():
        _check_shapes(base, x, h, h0, c0, w_ih, w_hh, w_hr, lengths, "c" in wanted)
        hidden = w_ih.shape[0] // len(gate_chunks(base))
        if out is None:
            fresh = {n: empty((x.shape[0], x.shape[1], hidden), x) for n in wanted}
            dest = {n: v.transpose(0, 1) for n, v in fresh.items()}
        else:
            _check_out(base, wanted, out, (x.shape[1], x.shape[0], hidden), x)
            fresh, dest = {n: out[n] for n in wanted}, dict(out)
        _internals(base, wanted, dest, x, h, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse)
        return fresh


def _check_names(kind: str, names: Collection[str] | None) -> tuple[str, ...]:
    if kind not in GATES:
        raise UnrollError(
            f"layer_internals: unknown kind {kind!r}; expected one of {', '.join(GATES)} "
            f"(or {', '.join(CELL_BASE_KIND)}; map RNNCell with specs.base_kind)"
        )
    if names is None:
        return GATES[kind]
    wanted = (names,) if isinstance(names, str) else tuple(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in GATES[kind]]
    if unknown:
        raise UnrollError(
            f"layer_internals: {kind} has no variable {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(GATES[kind])}"
        )
    return wanted


def _check_shapes(
    kind: str,
    x: Tensor,
    h: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    w_hr: Tensor | None,
    lengths: Tensor | None,
    needs_c0: bool,
) -> None:
    for name, t in (("x", x), ("h", h)):
        if t.dim() != 3:
            raise UnrollError(
                f"{kind}: Expected {name} to be 3D (time, batch, features), got {t.dim()}D instead"
            )
    steps, batch, n_in = x.shape
    n_out = h.shape[2]
    hidden = w_ih.shape[0] // len(gate_chunks(kind))
    expected = {
        "h": ((steps, batch, n_out), h.shape),
        "h0": ((batch, n_out), h0.shape),
        "w_ih": ((len(gate_chunks(kind)) * hidden, n_in), w_ih.shape),
        "w_hh": ((len(gate_chunks(kind)) * hidden, n_out), w_hh.shape),
    }
    if w_hr is not None:
        expected["w_hr"] = ((n_out, hidden), w_hr.shape)
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
                f"{tuple(h.shape)}, w_ih {tuple(w_ih.shape)}), got {tuple(got)}"
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


def empty(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised tensor in ``like``'s dtype and device, from torch's own allocator.

    NumPy's allocation (transparent huge pages) makes first writes about 3x cheaper on an idle
    machine, but measured slower in the benchmark's mixed runs (the kernel compacting memory
    for huge pages: 2-core EPYC, internals 1.8 s vs 1.55 s), so it is not used.
    """
    return like.new_empty(shape)


def _internals(
    kind: str,
    wanted: tuple[str, ...],
    dest: dict[str, Tensor],
    x: Tensor,
    h: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    lengths: Tensor | None,
    reverse: bool,
) -> None:
    """Write the ``wanted`` variables into ``dest``, dims ``(batch, time, hidden)``, any strides.

    Everything runs on ``(batch, time, ...)`` views, so a sample-major destination needs no
    transposing copy: each gate is one batched matmul written straight into its destination.
    """
    steps, batch, n_in = x.shape
    chunks = gate_chunks(kind)
    hidden = w_ih.shape[0] // len(chunks)
    if steps == 0:
        return
    needed = [g for g in chunks if any(g in NEEDS.get(n, (n,)) for n in wanted)]
    if "c" in wanted and "input_gate" not in wanted:
        dest["input_gate"] = dest["c"]  # the scan builds c over i's values
    # Time-major rows, read as (batch, time, features) with a row stride: bmm takes that as is.
    rows = _stacked_inputs(x, h, h0, lengths, reverse).transpose(0, 1)

    def block(w: Tensor, j: int) -> Tensor:
        return w[j * hidden : (j + 1) * hidden].to(x)

    # One matmul per gate rather than one over all gates: each gate then lands in its own
    # buffer, and the elementwise work is much faster there than on column slices of a
    # (rows, 4H) buffer (2-core EPYC, 8.4M values: sigmoid_ 3.5 ms vs 13 ms).
    gates: dict[str, Tensor] = {}
    for g in needed:
        j = chunks.index(g)
        b_x = block(b_ih, j) if b_ih is not None else None
        b_h = block(b_hh, j) if b_hh is not None else None
        target = dest[g] if g in dest else empty((batch, steps, hidden), x)
        if g == "new_gate":
            # GRU keeps the halves apart: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).
            _affine(target, rows[..., n_in:], block(w_hh, j), b_h).mul_(gates["reset_gate"])
            if b_x is not None:
                target.add_(b_x)
            gates[g] = target.baddbmm_(rows[..., :n_in], _batched(block(w_ih, j), batch)).tanh_()
            continue
        bias = b_x + b_h if b_x is not None and b_h is not None else b_x if b_x is not None else b_h
        gates[g] = _affine(target, rows, torch.cat([block(w_ih, j), block(w_hh, j)], 1), bias)
        act = ACTIVATION[g]
        if act is not None:
            getattr(gates[g], act)()
    del rows

    invalid = None
    if lengths is not None:
        t = torch.arange(steps, device=x.device).unsqueeze(0)
        invalid = (t >= lengths.to(x.device).unsqueeze(1)).unsqueeze(2)
    if "c" in wanted:
        assert c0 is not None  # checked in _check_shapes
        _cell_scan(gates, dest["c"], c0.to(x), invalid if reverse else None, reverse)
    if invalid is not None:
        for n in wanted:
            dest[n].masked_fill_(invalid, float("nan"))


def _stacked_inputs(
    x: Tensor, h: Tensor, h0: Tensor, lengths: Tensor | None, reverse: bool
) -> Tensor:
    """``[x_t, h_prev_t]`` for every step, dims ``(time, batch, input + out)``."""
    steps, batch, n_in = x.shape
    xh = empty((steps, batch, n_in + h.shape[2]), x)
    xh[..., :n_in] = x
    prev = xh[..., n_in:]
    if reverse:
        prev[:-1] = h[1:]
        prev[-1] = h0
        if lengths is not None:
            # A shorter sample starts at its own last step; rows past it are never read.
            last = (lengths.to(x.device) - 1).clamp(min=0)
            prev[last, torch.arange(batch, device=x.device)] = h0.to(x)
    else:
        prev[1:] = h[:-1]
        prev[0] = h0
    return xh


def _batched(weight: Tensor, batch: int) -> Tensor:
    """``weight.T`` repeated (as a view) over ``batch``."""
    return weight.t().expand(batch, *weight.t().shape)


def _affine(out: Tensor, rows: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``out = rows @ weight.T + bias`` over ``(batch, time, .)``, written in place.

    One batched matmul into ``out``, whatever its strides: on the CPU in float32 it is as fast
    as oneDNN's linear into a fresh contiguous buffer (2-core EPYC: 30 ms vs 34 ms for 32K x
    288 x 256), and it saves that buffer and the copy out of it.
    """
    weights = _batched(weight, rows.shape[0])
    if bias is None:
        return torch.bmm(rows, weights, out=out)
    return torch.baddbmm(bias.expand(out.shape), rows, weights, out=out)


def _cell_scan(
    gates: dict[str, Tensor], c: Tensor, c0: Tensor, invalid: Tensor | None, reverse: bool
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
        prev = cs[t]
