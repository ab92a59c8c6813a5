"""The step inputs ``[x_t, h_{t-1}]`` of a recurrent layer, and batched products over them.

Each gate's pre-activation over a whole sequence is an affine map of these step inputs,
computed as batched matmuls over ``(batch, time, .)`` views, written straight into its
destination. (Not to be confused with a dataset's sample rows, :mod:`seqacts.capture.chains`.)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["StepInputs", "affine", "batched", "empty", "stacked_inputs"]


def empty(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised tensor in ``like``'s dtype and device."""
    return like.new_empty(shape)


class StepInputs:
    """The inputs ``[x_t, h_{t-1}]`` of every step, read as ``(batch, time, .)`` views.

    ``h_{t-1}`` is ``h`` shifted by one step: a view of ``h`` except at the step that starts
    from ``h0``, so the products over ``x`` and over ``h_{t-1}`` are taken apart, from views,
    and no step inputs are copied. They are stacked into a new buffer for a narrow input, and for a
    backward run over samples of different lengths (each starting from ``h0`` at its own last
    step).
    """

    def __init__(
        self, x: Tensor, h: Tensor, h0: Tensor, lengths: Tensor | None, reverse: bool
    ) -> None:
        steps, n_in = x.shape[0], x.shape[2]
        self.stacked: Tensor | None = None
        self.previous: list[tuple[slice, Tensor]] = []
        # Apart, a narrow input makes a product of its own too small to run at full speed.
        if (reverse and lengths is not None) or n_in < h.shape[2]:
            self.stacked = stacked_inputs(x, h, h0, lengths, reverse).transpose(0, 1)
            self.inputs = self.stacked[..., :n_in]
            return
        self.inputs = x.transpose(0, 1)
        by_sample, first = h.transpose(0, 1), h0.to(x).unsqueeze(1)
        if reverse:
            self.previous = [(slice(0, steps - 1), by_sample[:, 1:]), (slice(steps - 1, steps), first)]
        else:
            self.previous = [(slice(1, steps), by_sample[:, :-1]), (slice(0, 1), first)]
        self.previous = [(t, v) for t, v in self.previous if v.shape[1] > 0]

    def affine(self, out: Tensor, w_ih: Tensor, w_hh: Tensor, bias: Tensor | None) -> Tensor:
        """``out = x @ w_ih.T + h_prev @ w_hh.T + bias``, dims ``(batch, time, hidden)``."""
        if self.stacked is not None:
            return affine(out, self.stacked, torch.cat([w_ih, w_hh], 1), bias)
        affine(out, self.inputs, w_ih, bias)
        for t, prev in self.previous:
            out[:, t].baddbmm_(prev, batched(w_hh, prev.shape[0]))
        return out

    def hidden_affine(self, out: Tensor, w_hh: Tensor, bias: Tensor | None) -> Tensor:
        """``out = h_prev @ w_hh.T + bias``, dims ``(batch, time, hidden)``."""
        if self.stacked is not None:
            return affine(out, self.stacked[..., self.inputs.shape[2] :], w_hh, bias)
        for t, prev in self.previous:
            affine(out[:, t], prev, w_hh, bias)
        return out


def stacked_inputs(
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
            # A shorter sample starts at its own last step; steps past it are never read.
            last = (lengths.to(x.device) - 1).clamp(min=0)
            prev[last, torch.arange(batch, device=x.device)] = h0.to(x)
    else:
        prev[1:] = h[:-1]
        prev[0] = h0
    return xh


def batched(weight: Tensor, batch: int) -> Tensor:
    """``weight.T`` repeated (as a view) over ``batch``."""
    return weight.t().expand(batch, *weight.t().shape)


def affine(out: Tensor, inputs: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``out = inputs @ weight.T + bias`` over ``(batch, time, .)``, written in place.

    One batched matmul into ``out``, whatever its strides: no intermediate buffer and no copy
    out of one.
    """
    weights = batched(weight, inputs.shape[0])
    if bias is None:
        return torch.bmm(inputs, weights, out=out)
    return torch.baddbmm(bias.expand(out.shape), inputs, weights, out=out)
