"""Run an edited layer of a fused stack through the model's own kernel, split at edited steps.

One direction is run as calls of the same kernel over stretches of steps: each call ends at
an edited step, whose state is then edited and passed on as the next call's initial state, so
one edited step costs about one extra kernel call rather than a Python loop over every step.
A backward direction runs as the reverse half of a bidirectional call.

Steps before the first edited step come from one unedited call of the whole layer, so they
are bit-identical to an unedited run: a kernel call over fewer steps may round its input
projection differently (BLAS blocks rows by count). For an LSTM, the cell state at that step
comes from a call over the steps up to it (the kernel returns only final cell states).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..capture.kernels import LayerCall
from .edits import Plan, take_rows

__all__ = ["apply_plans", "output_gate", "run_edited_layer"]


def output_gate(
    x: Tensor, h_prev: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
    b_hh: Tensor | None,
) -> Tensor:
    """The LSTM output gate ``o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)``."""
    hidden = w_ih.shape[0] // 4
    part = slice(3 * hidden, 4 * hidden)
    pre = F.linear(x, w_ih[part], None if b_ih is None else b_ih[part])
    pre = pre + F.linear(h_prev, w_hh[part], None if b_hh is None else b_hh[part])
    return torch.sigmoid(pre)


def apply_plans(
    active: Sequence[tuple[Plan, Tensor]],
    t: int,
    rows: Tensor | None,
    h: Tensor,
    c: Tensor | None,
    gate: Callable[[], Tensor],
    w_hr: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """Apply the plans that edit step ``t`` to one step's state ``h (n, H_out)``, ``c (n, H)``.

    ``active`` pairs each plan with its per-sample step flags ``(S,)``; ``rows`` maps the
    kernel's rows to samples. Cell-state edits come first and recompute ``h`` from ``c``
    through ``gate()`` (the output gate), then hidden-state edits overwrite ``h``.
    """
    n = h.shape[0]
    for state in ("c", "h"):
        for p, flags in active:
            if p.state != state:
                continue
            mask, vals = p.at(t, rows, n, h)
            mask = mask & take_rows(flags, rows, n, p.label).to(mask.device).unsqueeze(1)
            if state == "h":
                h = torch.where(mask, vals, h)
                continue
            assert c is not None  # plan() allows state="c" only on LSTM layers
            c = torch.where(mask, vals, c)
            unprojected = gate() * torch.tanh(c)
            if w_hr is None:
                h = torch.where(mask, unprojected, h)
            else:
                h = torch.where(mask.any(1, keepdim=True), F.linear(unprojected, w_hr), h)
    return h, c


class _Layout:
    """Steps of a layer input in time-major layout: padded ``(T, N, ...)`` or packed rows."""

    def __init__(self, call: LayerCall) -> None:
        x = call.input
        self.packed = call.batch_sizes is not None
        if call.batch_sizes is not None:
            self.batch_sizes = call.batch_sizes
            self.rows = [int(b) for b in call.batch_sizes.tolist()]
            self.offsets = [0]
            for b in self.rows:
                self.offsets.append(self.offsets[-1] + b)
            self.x = x
        else:
            self.x = x.transpose(0, 1) if call.batch_first else x
            self.rows = [self.x.shape[1]] * self.x.shape[0]
        self.steps = len(self.rows)

    def span(self, seq: Tensor, a: int, b: int, start: int = 0) -> Tensor:
        """Steps ``a..b`` of ``seq``, a tensor holding steps ``start..``."""
        if self.packed:
            base = self.offsets[start]
            return seq[self.offsets[a] - base : self.offsets[b + 1] - base]
        return seq[a - start : b + 1 - start]

    def step(self, seq: Tensor, t: int, start: int = 0) -> Tensor:
        """Step ``t`` of ``seq`` as ``(rows, features)``."""
        s = self.span(seq, t, t, start)
        return s if self.packed else s[0]

    def piece(self, step_value: Tensor) -> Tensor:
        """A single step's ``(rows, features)`` as a piece of the sequence."""
        return step_value if self.packed else step_value.unsqueeze(0)


class _Runner:
    """Runs one layer (kernel layout in, kernel layout out) with its plans applied."""

    def __init__(self, call: LayerCall, plans: Sequence[Plan]) -> None:
        self.call = call
        self.lstm = call.kind == "LSTM"
        self.layout = _Layout(call)
        self.n_dir = 2 if call.bidirectional else 1
        per_dir = len(call.weights) // self.n_dir
        self.weights = [list(call.weights[d * per_dir : (d + 1) * per_dir]) for d in range(self.n_dir)]
        self.has_projection = self.lstm and per_dir == (4 if call.has_biases else 2) + 1
        self.h0, self.c0 = (call.state[0], call.state[1]) if self.lstm else (call.state, None)
        self.h_out = self.h0.shape[-1]
        unsorted = call.unsorted_indices if self.layout.packed else None
        self.order: Tensor | None = None
        if unsorted is not None:
            order = torch.empty_like(unsorted)
            order[unsorted] = torch.arange(len(unsorted), device=unsorted.device)
            self.order = order  # kernel row -> sample
        self.plans = [[p for p in plans if p.direction == d] for d in range(self.n_dir)]

    # -- kernel calls ----------------------------------------------------------------------
    def kernel(self, a: int, b: int, h: Tensor, c: Tensor | None, d: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """Direction ``d`` over steps ``a..b`` from state ``(h, c)``: output, final h, c."""
        call, lay = self.call, self.layout
        x = lay.span(lay.x, a, b)
        if d == 0:
            weights, bidirectional, hx, cx = self.weights[0], False, h[None], None if c is None else c[None]
        else:  # the reverse half of a bidirectional call; its forward half is discarded
            weights, bidirectional = self.weights[d] * 2, True
            hx, cx = torch.stack([h, h]), None if c is None else torch.stack([c, c])
        state = (hx, cx) if self.lstm else hx
        if lay.packed:
            bs = lay.batch_sizes[a : b + 1]
            res = call.original(x, bs, state, weights, call.has_biases, 1, 0.0, call.train, bidirectional)
        else:
            res = call.original(x, state, weights, call.has_biases, 1, 0.0, call.train, bidirectional, False)
        out = res[0] if d == 0 else res[0][..., self.h_out :]
        return out, res[1][-1], res[2][-1] if self.lstm else None

    # -- one direction ---------------------------------------------------------------------
    def direction(self, d: int, full: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        lay, rows, steps = self.layout, self.layout.rows, self.layout.steps
        flags = [(p, p.step_mask(steps)) for p in self.plans[d]]
        edited = sorted({int(t) for _, m in flags for t in m.any(0).nonzero().flatten().tolist()},
                        reverse=d == 1)  # fmt: skip
        w = self.weights[d]
        w_hr = w[-1] if self.has_projection else None
        h0, c0 = self.h0[d], None if self.c0 is None else self.c0[d]
        forward = d == 0
        first_step = 0 if forward else steps - 1
        pieces: list[tuple[int, Tensor]] = []
        h, c = h0, c0

        def edit(t: int, h_t: Tensor, c_t: Tensor | None, h_prev: Tensor) -> tuple[Tensor, Tensor | None]:
            n = h_t.shape[0]
            active = [(p, m[:, t]) for p, m in flags if bool(m[:, t].any())]
            rows_idx = None if self.order is None else self.order[:n]
            x_t = lay.step(lay.x, t)
            return apply_plans(active, t, rows_idx, h_t, c_t,
                               lambda: output_gate(x_t, h_prev, *w[:2], *self._biases(w)), w_hr)  # fmt: skip

        todo = list(edited)
        if todo[0] != first_step:  # the unedited steps come from the whole-layer call
            t = todo.pop(0)
            out_d = self._full_output(full, d)
            n = rows[t]
            lo, hi = (0, t - 1) if forward else (t + 1, steps - 1)
            pieces.append((lo, lay.span(out_d, lo, hi)))
            h_t = lay.step(out_d, t)
            if forward:
                h_prev = lay.step(out_d, t - 1)[:n]
                rest_h = full[1][d][n:]
                rest_c = full[2][d][n:] if self.lstm else None
            else:
                n_prev = rows[t + 1]
                h_prev = torch.cat([lay.step(out_d, t + 1), h0[n_prev:n]])
                rest_h, rest_c = h0[n:], None if c0 is None else c0[n:]
            c_t = None
            if self.lstm:
                assert c0 is not None
                a, b = (0, t) if forward else (t, steps - 1)
                _, _, c_run = self.kernel(a, b, h0[: rows[a]], c0[: rows[a]], d)
                assert c_run is not None
                c_t = c_run[:n]
            h_t, c_t = edit(t, h_t, c_t, h_prev)
            pieces.append((t, lay.piece(h_t)))
            h = torch.cat([h_t, rest_h])
            if c_t is not None and rest_c is not None:
                c = torch.cat([c_t, rest_c])
            cursor = t + 1 if forward else t - 1
        else:
            cursor = first_step
        for t in [*todo, None]:
            if forward:
                a, b = cursor, steps - 1 if t is None else t
            else:
                a, b = 0 if t is None else t, cursor
            if a > b:
                break
            n_a = rows[a]
            hx = h[:n_a]
            out, hn, cn = self.kernel(a, b, hx, None if c is None else c[:n_a], d)
            h = torch.cat([hn, h[n_a:]])
            if c is not None and cn is not None:
                c = torch.cat([cn, c[n_a:]])
            if t is None:
                pieces.append((a, out))
                break
            n = rows[t]
            h_t = lay.step(out, t, a)
            if forward:
                if t > a:
                    pieces.append((a, lay.span(out, a, t - 1, a)))
                h_prev = lay.step(out, t - 1, a)[:n] if t > a else hx[:n]
            else:
                if t < b:
                    pieces.append((t + 1, lay.span(out, t + 1, b, a)))
                h_prev = (torch.cat([lay.step(out, t + 1, a), hx[rows[t + 1] : n]])
                          if t < b else hx[:n])  # fmt: skip
            h_t, c_t = edit(t, h_t, None if c is None else c[:n], h_prev)
            pieces.append((t, lay.piece(h_t)))
            h = torch.cat([h_t, h[n:]])
            if c is not None and c_t is not None:
                c = torch.cat([c_t, c[n:]])
            cursor = t + 1 if forward else t - 1
        pieces.sort(key=lambda p: p[0])
        return torch.cat([p for _, p in pieces]), h, c

    def _biases(self, w: list[Tensor]) -> tuple[Tensor | None, Tensor | None]:
        return (w[2], w[3]) if self.call.has_biases else (None, None)

    def _full_output(self, full: Any, d: int) -> Tensor:
        out = full[0]
        if not self.layout.packed and self.call.batch_first:
            out = out.transpose(0, 1)
        return out[..., d * self.h_out : (d + 1) * self.h_out]

    # -- the layer -----------------------------------------------------------------------------
    def run(self) -> Any:
        steps = self.layout.steps
        edited_dirs = [d for d in range(self.n_dir) if self.plans[d]]
        starts = {}
        for d in edited_dirs:
            masks = [p.step_mask(steps) for p in self.plans[d]]
            any_step = torch.stack([m.any(0) for m in masks]).any(0).nonzero().flatten()
            if len(any_step):
                starts[d] = int(any_step[0] if d == 0 else any_step[-1])
        if not starts:
            return None
        needs_full = len(starts) < self.n_dir or any(
            t != (0 if d == 0 else steps - 1) for d, t in starts.items()
        )
        full = self.call.run() if needs_full else None
        outs, hs, cs = [], [], []
        for d in range(self.n_dir):
            if d in starts:
                out, h, c = self.direction(d, full)
            else:
                out, h = self._full_output(full, d), full[1][d]
                c = full[2][d] if self.lstm else None
            outs.append(out)
            hs.append(h)
            cs.append(c)
        output = outs[0] if self.n_dir == 1 else torch.cat(outs, -1)
        if not self.layout.packed and self.call.batch_first:
            output = output.transpose(0, 1)
        if self.lstm:
            return output, torch.stack(hs), torch.stack([c for c in cs if c is not None])
        return output, torch.stack(hs)


def run_edited_layer(call: LayerCall, plans: Sequence[Plan]) -> Any:
    """The kernel's result for ``call`` with ``plans`` applied, or None when no step is edited."""
    return _Runner(call, plans).run()

