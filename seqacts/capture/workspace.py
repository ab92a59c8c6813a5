"""Read an LSTM layer's gates from the oneDNN kernel's own workspace (CPU, grad mode).

With autograd on, ``torch._VF.lstm`` runs each layer and direction on the CPU through
``aten::mkldnn_rnn_layer``, whose training kernel keeps every step's post-activation gates in a
workspace for the backward pass. :func:`lstm_layer` issues that same op for one layer, exactly
as ATen's ``mkldnn_rnn`` does (so outputs and gradients are bit-identical to the kernel call it
replaces), and returns views of those gates: the internals then cost a copy instead of a second
set of matrix products.

The workspace layout is oneDNN's internal, kept here as data (:func:`gate_rows`) and checked on
every call: a few steps are recomputed from ``h`` and compared. When they disagree, or the op
is missing, the caller falls back to recomputing the gates, after one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import WorkspaceWarning
from ..kinds.builtin import LSTM
from ..schema import INTERNAL_ACTIVATION

__all__ = ["OP_NAME", "gate_rows", "gates_match", "lstm_layer", "warned"]

#: The op ``torch._VF.lstm`` runs per layer and direction on the CPU, and oneDNN's mode number
#: for an LSTM cell (``ideep::rnn_kind::LSTM``).
OP_NAME = "mkldnn_rnn_layer"
_LSTM_MODE = 2

#: Reasons already warned about in this process (one warning each).
warned: set[str] = set()


def gate_rows(workspace: Tensor, steps: int, batch: int, hidden: int, dtype: torch.dtype) -> Tensor:
    """The gates in a training workspace, dims ``(step, batch, 4 * hidden)``: a strided view.

    oneDNN keeps the post-activation gates i, f, g, o first in the workspace, in the kernel's
    own dtype, one row of ``ld`` values per (step, sample), steps in the order the kernel ran
    them (time reversed for the backward direction). ``ld`` is oneDNN's "good leading
    dimension": ``4 * hidden`` rounded up to 64 bytes, plus 64 bytes more when that is a
    multiple of 256 values.
    """
    per_line = 64 // torch.empty(0, dtype=dtype).element_size()
    ld = -(-4 * hidden // per_line) * per_line
    if ld % 256 == 0:
        ld += per_line
    values = workspace.view(dtype)
    if values.numel() < steps * batch * ld:
        raise ValueError(
            f"workspace of {values.numel()} values is too small for {steps} x {batch} x {ld}"
        )
    return values[: steps * batch * ld].view(steps, batch, ld)[..., : 4 * hidden]


def gates_match(
    gates: Tensor,
    x: Tensor,
    h: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None,
    b_hh: Tensor | None,
    reverse: bool,
) -> bool:
    """Whether the kernel-order ``gates`` agree with a recomputation at a few rows.

    The rows checked are the first, second, middle and last sample at the kernel's first,
    second and last step: a misread offset, row length or gate order shows in each of them,
    and the check costs a few small products however large the batch. ``x`` (time, batch,
    input) and ``h`` (time, batch, hidden) are time-ordered; the check is in float32, with a
    tolerance far below the O(1) errors of a misread layout: 1e-4 (3e-2 for bfloat16 gates)
    plus 1e-6 of the sum of the products' magnitudes, for rounding in large sums.
    """
    steps, batch = x.shape[:2]
    kernel_steps = sorted({0, min(1, steps - 1), steps - 1})
    samples = sorted({0, min(1, batch - 1), batch // 2, batch - 1})
    times = [steps - 1 - s if reverse else s for s in kernel_steps]
    prev_times = [t + 1 if reverse else t - 1 for t in times]
    f32 = torch.float32
    h_prev = torch.stack(
        [h0[samples] if s == 0 else h[t, samples] for s, t in zip(kernel_steps, prev_times, strict=True)]
    )
    x_t = x[times][:, samples].to(f32)
    h_prev, w_ih, w_hh = h_prev.to(f32), w_ih.to(f32), w_hh.to(f32)
    pre = x_t @ w_ih.t() + h_prev @ w_hh.t()
    scale = x_t.abs() @ w_ih.abs().t() + h_prev.abs() @ w_hh.abs().t()
    for b in (b_ih, b_hh):
        if b is not None:
            pre += b.to(f32)
            scale += b.to(f32).abs()
    for name, chunk in zip(LSTM.gates, pre.chunk(4, -1), strict=True):
        act = INTERNAL_ACTIVATION[name]
        if act is not None:
            getattr(chunk, f"{act}_")()
    tol = (1e-4 if gates.dtype == f32 else 3e-2) + 1e-6 * scale
    got = gates[kernel_steps][:, samples].to(f32)
    agree = ((got - pre).abs() <= tol) | (got.isnan() & pre.isnan())  # NaN inputs give NaN gates
    return bool(agree.all())


def _warn_once(reason: str, message: str) -> None:
    if reason not in warned:
        warned.add(reason)
        warnings.warn(message, WorkspaceWarning, stacklevel=4)


def _applies(x: Tensor, tensors: Sequence[Tensor]) -> bool:
    """Whether ``torch._VF.lstm`` would run this layer through ``mkldnn_rnn_layer`` in grad mode."""
    if not (torch.is_grad_enabled() and torch.backends.mkldnn.is_available()):
        return False
    if not torch.backends.mkldnn.enabled or torch.is_autocast_enabled("cpu"):
        return False
    if x.dtype == torch.bfloat16:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    elif x.dtype != torch.float32:
        return False
    return x.numel() > 0 and all(
        isinstance(t, Tensor) and t.device.type == "cpu" and t.dtype == x.dtype
        and t.layout == torch.strided and type(t) in (Tensor, torch.nn.Parameter)
        for t in (x, *tensors)
    )


def lstm_layer(
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    weights: Sequence[Tensor],
    *,
    has_biases: bool,
    train: bool,
    bidirectional: bool,
    batch_first: bool,
) -> tuple[tuple[Tensor, Tensor, Tensor], tuple[Tensor, ...]] | None:
    """Run one unpacked, unprojected LSTM layer as ``torch._VF.lstm`` would, keeping its gates.

    Parameters
    ----------
    x, h0, c0, weights, has_biases, train, bidirectional, batch_first
        One layer's arguments of ``torch._VF.lstm`` (``num_layers=1``, no dropout).

    Returns
    -------
    tuple or None
        ``((output, h_n, c_n), gates)``: the kernel call's results, bit for bit, and per
        direction the kernel's gates as a view, dims ``(step, batch, 4 * hidden)`` in the
        order the kernel ran the steps (reversed for the backward direction), or ``()`` when
        the layout check failed (the results are still the kernel's). ``None`` when this layer
        does not run on the oneDNN training kernel here, or the op is missing: call the kernel.
    """
    n_dir = 2 if bidirectional else 1
    per_dir = len(weights) // n_dir
    if c0 is None or per_dir != (4 if has_biases else 2) or not _applies(x, [h0, c0, *weights]):
        return None
    op = getattr(torch.ops.aten, OP_NAME, None)
    if op is None:
        _warn_once("op", f"torch.ops.aten.{OP_NAME} is missing in this torch build; LSTM gates "
                   "are recomputed instead of read from the kernel's workspace")
        return None
    hidden = h0.shape[-1]
    # The same steps as ATen's mkldnn_rnn: time-major contiguous input, one op per direction.
    seq = (x.transpose(0, 1) if batch_first else x).contiguous()
    hx, cx = h0.contiguous(), c0.contiguous()
    outputs, hy, cy, spaces = [], [], [], []
    for d in range(n_dir):
        w = weights[d * per_dir : (d + 1) * per_dir]
        # without biases ATen passes zeros shaped like the weights (unused by the kernel)
        b_ih = w[2] if has_biases else torch.zeros_like(w[0], requires_grad=False)
        b_hh = w[3] if has_biases else torch.zeros_like(w[1], requires_grad=False)
        out, h_n, c_n, space = op(
            seq, w[0], w[1], b_ih, b_hh, hx[d], cx[d], d == 1, [], _LSTM_MODE, hidden, 1,
            has_biases, bidirectional, batch_first, train,
        )
        outputs.append(out)
        hy.append(h_n)
        cy.append(c_n)
        spaces.append(space)
    output = outputs[0] if n_dir == 1 else torch.cat(outputs, -1)
    result = (output.transpose(0, 1) if batch_first else output, torch.stack(hy), torch.stack(cy))
    return result, _checked_gates(spaces, seq, outputs, hx, weights, has_biases, per_dir)


def _checked_gates(
    spaces: list[Tensor],
    seq: Tensor,
    outputs: list[Tensor],
    hx: Tensor,
    weights: Sequence[Tensor],
    has_biases: bool,
    per_dir: int,
) -> tuple[Tensor, ...]:
    steps, batch = seq.shape[:2]
    gates = []
    with torch.no_grad():
        for d, space in enumerate(spaces):
            w = [t.detach() for t in weights[d * per_dir : (d + 1) * per_dir]]
            hidden = hx.shape[-1]
            try:
                rows = gate_rows(space.detach(), steps, batch, hidden, seq.dtype)
                ok = gates_match(
                    rows, seq.detach(), outputs[d].detach(), hx[d].detach(), w[0], w[1],
                    w[2] if has_biases else None, w[3] if has_biases else None, d == 1,
                )
            except (RuntimeError, ValueError):
                ok = False
            if not ok:
                _warn_once("layout", "the LSTM kernel's workspace does not hold the gates where "
                           "seqacts expects them (a changed oneDNN layout?); recomputing them "
                           "instead, at about twice the cost")
                return ()
            gates.append(rows)
    return tuple(gates)
