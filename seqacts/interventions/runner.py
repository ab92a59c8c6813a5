"""Run an edited layer of a fused stack through the model's own kernel, split at edited steps.

One direction is run as calls of the same kernel over stretches of steps: each call ends at
an edited step, whose state is then edited and passed on as the next call's initial state, so
each edited step costs about one more kernel call rather than a Python loop over every step.
A backward direction runs as the reverse half of a bidirectional call.

Steps before the first edited step come from one unedited call of the whole layer, so they
are bit-identical to an unedited run: a kernel call over fewer steps may round its input
projection differently (BLAS blocks rows by count). For an LSTM, the cell state at that step
comes from a second call over the steps up to it (the kernel returns only final cell states):
on the CPU that call is cheaper than recomputing the gates from ``h`` with matmuls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..capture.calls import CellCall, LayerCall, StackCall
from ..kinds import has_cell_state
from .edits import Plan, take_rows

__all__ = ["WriteOnlySink", "Layout", "Runner", "apply_plans", "output_gate", "run_edited_layer"]


class WriteOnlySink:
    """The reading half of a kernel sink, for editors that keep nothing of what they see."""

    def wants_inputs(self) -> bool:
        return False

    def on_stack(self, call: StackCall) -> None:
        return None

    def on_cell(self, call: CellCall) -> None:
        return None

    def on_error(self, weight: Tensor, owner: object, error: BaseException) -> None:
        return None  # an editor's own errors propagate (see kernels); nothing to keep here


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


class Layout:
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


class Runner:
    """Runs one layer (kernel layout in, kernel layout out) with its plans applied."""

    def __init__(self, call: LayerCall, plans: Sequence[Plan]) -> None:
        self.call = call
        self.lstm = has_cell_state(call.kind)
        self.layout = Layout(call)
        self.n_dir = 2 if call.bidirectional else 1
        per_dir = len(call.weights) // self.n_dir
        self.weights = [list(call.weights[d * per_dir : (d + 1) * per_dir])
                        for d in range(self.n_dir)]  # fmt: skip
        self.has_projection = self.lstm and per_dir == (4 if call.has_biases else 2) + 1
        self.h0: Tensor = call.state[0] if self.lstm else call.state
        self.c0: Tensor | None = call.state[1] if self.lstm else None
        self.h_out = self.h0.shape[-1]
        self.order: Tensor | None = None  # kernel row -> sample (a PackedSequence's sort)
        unsorted = call.unsorted_indices if self.layout.packed else None
        if unsorted is not None:
            self.order = torch.empty_like(unsorted)
            self.order[unsorted] = torch.arange(len(unsorted), device=unsorted.device)
        self.plans = [[p for p in plans if p.direction == d] for d in range(self.n_dir)]
        steps = self.layout.steps
        self.flags = [[(p, p.step_mask(steps)) for p in ps] for ps in self.plans]
        for p, m in (pair for pairs in self.flags for pair in pairs):
            p.check_samples(self.layout.rows[0] if steps else 0, m)

    def edited_steps(self, d: int) -> list[int]:
        """Direction ``d``'s edited steps, in the order it processes them."""
        found: set[int] = set()
        for _, m in self.flags[d]:
            found.update(m.any(0).nonzero().flatten().tolist())
        return sorted(found, reverse=d == 1)

    def kernel(
        self, a: int, b: int, h: Tensor, c: Tensor | None, d: int
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Direction ``d`` over steps ``a..b`` from state ``(h, c)``: output, final h and c."""
        call, lay = self.call, self.layout
        x = lay.span(lay.x, a, b)
        hx, cx = h.unsqueeze(0), None if c is None else c.unsqueeze(0)
        weights, bidirectional = self.weights[d], d == 1
        if bidirectional:  # the reverse half of a bidirectional call; the forward half is unused
            weights = weights * 2
            hx, cx = hx.repeat(2, 1, 1), None if cx is None else cx.repeat(2, 1, 1)
        state = (hx, cx) if self.lstm else hx
        if lay.packed:
            res = call.original(x, lay.batch_sizes[a : b + 1], state, weights, call.has_biases,
                                1, 0.0, call.train, bidirectional)  # fmt: skip
        else:
            res = call.original(x, state, weights, call.has_biases, 1, 0.0, call.train,
                                bidirectional, False)  # fmt: skip
        out = res[0][..., self.h_out :] if bidirectional else res[0]
        return out, res[1][-1], res[2][-1] if self.lstm else None

    def full_output(self, full: Any, d: int) -> Tensor:
        """Direction ``d``'s output of the unedited whole-layer call, time-major."""
        out = full[0]
        if not self.layout.packed and self.call.batch_first:
            out = out.transpose(0, 1)
        return out[..., d * self.h_out : (d + 1) * self.h_out]

    def edit(
        self, d: int, t: int, h_t: Tensor, c_t: Tensor | None, h_prev: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """Apply direction ``d``'s plans to step ``t``'s state (its first ``n`` kernel rows)."""
        n = h_t.shape[0]
        active = [(p, m[:, t]) for p, m in self.flags[d] if bool(m[:, t].any())]
        rows = None if self.order is None else self.order[:n]
        w = self.weights[d]
        b_ih, b_hh = (w[2], w[3]) if self.call.has_biases else (None, None)
        x_t = self.layout.step(self.layout.x, t)
        return apply_plans(active, t, rows, h_t, c_t,
                           lambda: output_gate(x_t, h_prev, w[0], w[1], b_ih, b_hh),
                           w[-1] if self.has_projection else None)  # fmt: skip

    def c_edit(self, d: int, t: int, c: Tensor) -> Tensor:
        """The cell-state edits of direction ``d`` at step ``t``, for all kernel rows of ``c``."""
        n = c.shape[0]
        for p, m in self.flags[d]:
            if p.state == "c" and bool(m[:, t].any()):
                mask, vals = p.at(t, self.order, n, c)
                rows = take_rows(m[:, t], self.order, n, p.label).to(mask.device)
                c = torch.where(mask & rows.unsqueeze(1), vals, c)
        return c

    def direction(self, d: int, full: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        """Run direction ``d`` with its edits: its output (time-major), final h and c.

        ``h`` and ``c`` always hold every sample's row: rows a packed batch has dropped keep
        their final state (forward) or, not yet started, their initial state (backward).
        """
        lay, rows = self.layout, self.layout.rows
        forward = d == 0
        h0, c0 = self.h0[d], None if self.c0 is None else self.c0[d]
        todo = self.edited_steps(d)
        pieces: list[tuple[int, Tensor]] = []  # (first step, values), in any order
        h, c = h0, c0
        cursor = 0 if forward else lay.steps - 1  # the next step to run
        if todo[0] != cursor:  # steps before the first edit come from the whole-layer call
            t = todo.pop(0)
            h, c = self.resume(d, t, full, pieces)
            cursor = t + 1 if forward else t - 1
        for t_or_end in [*todo, None]:
            end = (lay.steps - 1 if forward else 0) if t_or_end is None else t_or_end
            a, b = (cursor, end) if forward else (end, cursor)
            if a > b:
                break
            hx = h[: rows[a]]
            out, hn, cn = self.kernel(a, b, hx, None if c is None else c[: rows[a]], d)
            h = torch.cat([hn, h[rows[a] :]])
            c = None if c is None or cn is None else torch.cat([cn, c[rows[a] :]])
            if t_or_end is None:
                pieces.append((a, out))
                break
            t, n = t_or_end, rows[t_or_end]
            if forward:
                if t > a:
                    pieces.append((a, lay.span(out, a, t - 1, a)))
                h_prev = lay.step(out, t - 1, a)[:n] if t > a else hx[:n]
            else:
                if t < b:
                    pieces.append((t + 1, lay.span(out, t + 1, b, a)))
                h_prev = (torch.cat([lay.step(out, t + 1, a), hx[rows[t + 1] : n]])
                          if t < b else hx[:n])  # fmt: skip
            h_t, c_t = self.edit(d, t, lay.step(out, t, a), None if c is None else c[:n], h_prev)
            pieces.append((t, lay.piece(h_t)))
            h = torch.cat([h_t, h[n:]])
            c = None if c is None or c_t is None else torch.cat([c_t, c[n:]])
            cursor = t + 1 if forward else t - 1
        pieces.sort(key=lambda piece: piece[0])
        return torch.cat([v for _, v in pieces]), h, c

    def resume(
        self, d: int, t: int, full: Any, pieces: list[tuple[int, Tensor]]
    ) -> tuple[Tensor, Tensor | None]:
        """Take direction ``d``'s steps before ``t`` from the unedited call, edit step ``t``.

        Returns the state (all rows) after the edited step ``t``; appends the output pieces.
        """
        lay, rows, forward = self.layout, self.layout.rows, d == 0
        h0, c0 = self.h0[d], None if self.c0 is None else self.c0[d]
        out = self.full_output(full, d)
        n = rows[t]
        lo, hi = (0, t - 1) if forward else (t + 1, lay.steps - 1)
        pieces.append((lo, lay.span(out, lo, hi)))
        if forward:  # rows past n have finished: their final state is the unedited one
            h_prev = lay.step(out, t - 1)[:n]
            rest_h, rest_c = full[1][d][n:], full[2][d][n:] if self.lstm else None
        else:  # rows past n have not started yet: their initial state
            h_prev = torch.cat([lay.step(out, t + 1), h0[rows[t + 1] : n]])
            rest_h, rest_c = h0[n:], None if c0 is None else c0[n:]
        c_t = None
        if c0 is not None:  # the kernel returns only final cell states: run it up to step t
            a, b = (0, t) if forward else (t, lay.steps - 1)
            c_t = self.kernel(a, b, h0[: rows[a]], c0[: rows[a]], d)[2]
            c_t = None if c_t is None else c_t[:n]
        h_t, c_t = self.edit(d, t, lay.step(out, t), c_t, h_prev)
        pieces.append((t, lay.piece(h_t)))
        h = torch.cat([h_t, rest_h])
        c = None if c_t is None or rest_c is None else torch.cat([c_t, rest_c])
        return h, c

    def run(self) -> Any:
        """The layer's result in the kernel's own format, or None when no step is edited."""
        starts = {d: s[0] for d in range(self.n_dir) if (s := self.edited_steps(d))}
        if not starts:
            return None
        if any(p.state == "c" for ps in self.plans for p in ps):
            self.call.c_edit = self.c_edit  # a recorder's recomputed c applies the same edits
        last = self.layout.steps - 1
        needs_full = len(starts) < self.n_dir or any(
            t != (0 if d == 0 else last) for d, t in starts.items()
        )
        full = self.call.run() if needs_full else None
        outs, hs, cs = [], [], []
        for d in range(self.n_dir):
            if d in starts:
                out, h, c = self.direction(d, full)
            else:  # an unedited direction of an edited bidirectional layer: needs_full
                assert full is not None
                out, h, c = self.full_output(full, d), full[1][d], full[2][d] if self.lstm else None
            outs.append(out)
            hs.append(h)
            cs.append(c)
        output = torch.cat(outs, -1) if self.n_dir > 1 else outs[0]
        if not self.layout.packed and self.call.batch_first:
            output = output.transpose(0, 1)
        if self.lstm:
            return output, torch.stack(hs), torch.stack([c for c in cs if c is not None])
        return output, torch.stack(hs)


def run_edited_layer(call: LayerCall, plans: Sequence[Plan]) -> Any:
    """The kernel's result for ``call`` with ``plans`` applied, or None when no step is edited."""
    return Runner(call, plans).run()

