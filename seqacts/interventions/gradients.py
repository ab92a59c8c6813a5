"""State gradients: the derivative of a score with respect to every layer's state at every step.

A fused kernel keeps the adjoint that backpropagation through time carries to itself. To expose
it, :func:`state_gradients` runs the model once more with every recurrent layer split into
steps (:class:`Probes`, a kernel editor: the cell kernel of the layer's kind, one autograd node
per step), so that each step's returned state is a tensor of the graph: a hook on it keeps
``d score / d h_t``, the total derivative through all later steps, upper layers and the output.
A cell call's returned state gets a zero *probe* added (``h_t + p_t`` equals ``h_t``;
``d score / d p_t = d score / d h_t``). The backward is ``torch.autograd.grad`` with respect to
zero leaves added to the initial states and to the probes only, so no parameter's ``.grad``
changes.

Where each gradient goes in the dataset is learnt by a third, cheap, recorded run in which the
editor returns, in place of each layer's states, the index of each (call, direction, step,
kernel row): the recorder lays the indices out exactly as it laid out the states (sample order,
padding, chains), and the gradients are gathered by index.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from ..capture import explaining, kernels
from ..capture.calls import LayerCall
from ..capture.discovery import by_first_weight, recurrent_layers
from ..capture.extract import extract_with
from ..capture.recorder import Recorder
from ..capture.specs import LayerSpec
from ..errors import OptionError
from ..kinds import has_cell_state
from ..options import RecordingOptions
from ..schema import CELL_KERNELS, VARIABLE_DOCS
from .rng import rng_kept
from .runner import Runner, WriteOnlySink

__all__ = ["Probes", "extract_with_gradients", "state_gradients"]

Score = Callable[[Any], Any]


@dataclass
class _Block:
    """One direction of one call: the gradient of each step's returned state, ``n0`` rows wide
    (fewer at a packed step), filled during the backward."""

    rows: list[int]
    n0: int
    width: int
    grads: list[Tensor | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.grads = [None] * len(self.rows)

    def catch(self, t: int) -> Callable[[Tensor], None]:
        """A tensor hook that keeps the gradient of step ``t``'s state."""

        def keep(grad: Tensor) -> None:
            self.grads[t] = grad

        return keep


@dataclass
class _Call:
    """One probed call: per direction, the blocks of ``h`` and of ``c`` (None: no cell state)."""

    h: list[_Block]
    c: list[_Block | None]


def _leaf(like: Tensor) -> Tensor:
    """A zero tensor the backward is asked for: ``like + leaf`` equals ``like``."""
    return torch.zeros_like(like).requires_grad_(True)


@dataclass
class Probes(WriteOnlySink):
    """A kernel editor that runs every recurrent layer step by step with probes on its states.

    ``mode="probe"`` keeps the gradient of every state (``calls``, in call order): a stack
    layer's initial state gets a zero leaf added, and each step's state a tensor hook (every
    state descends from that leaf, so the backward asked for the leaves passes through all of
    them); a cell call's returned state gets a zero leaf added (``cell_leaves``). ``mode="ids"``
    returns, in place of every state, the index of its (call, direction, step, row) in the
    flattened gradients of the probe run, for the recorder to lay out.
    """

    model: nn.Module
    mode: str
    calls: list[_Call] = field(default_factory=list)
    leaves: list[Tensor] = field(default_factory=list)
    cell_leaves: list[tuple[_Block, Tensor]] = field(default_factory=list)
    _by_weight: dict[int, tuple[nn.Module, list[LayerSpec]]] = field(default_factory=dict)
    _modules: list[tuple[nn.Module, list[LayerSpec]]] = field(default_factory=list)
    _next_id: int = 0

    def __post_init__(self) -> None:
        self._modules = recurrent_layers(self.model)
        self._by_weight = by_first_weight(self._modules)

    # -- kernels.Editor ------------------------------------------------------------------------
    def watches(self, weight: Tensor, owner: object) -> bool:
        return id(weight) in self._by_weight or any(m is owner for m, _ in self._modules)

    def run_layer(self, call: LayerCall) -> Any:
        runner = Runner(call, ())
        return self._ids_layer(runner) if self.mode == "ids" else self._probed_layer(runner)

    def edit_cell(self, kind: str, args: tuple[Any, ...], result: Any, owner: object) -> Any:
        h, c = result if has_cell_state(kind) else (result, None)
        n = h.shape[0]
        if self.mode == "ids":
            first = self._take_ids(1, 1, n, h.dtype)
            ids = torch.arange(first, first + n, dtype=h.dtype, device=h.device)
            h_ids = ids.unsqueeze(1).expand_as(h).clone()
            return (h_ids, ids.unsqueeze(1).expand_as(c).clone()) if c is not None else h_ids
        b_h = _Block([n], n, h.shape[1])
        b_c = None if c is None else _Block([n], n, c.shape[1])
        self.calls.append(_Call([b_h], [b_c]))
        p_h = _leaf(h)
        self.cell_leaves.append((b_h, p_h))
        if c is None or b_c is None:
            return h + p_h
        p_c = _leaf(c)
        self.cell_leaves.append((b_c, p_c))
        return h + p_h, c + p_c

    # -- the two runs ----------------------------------------------------------------------
    def _take_ids(self, n_dir: int, steps: int, rows: int, dtype: torch.dtype) -> int:
        first = self._next_id
        self._next_id += n_dir * steps * rows
        exact = round(2 / torch.finfo(dtype).eps)  # every integer up to this is exact
        if self._next_id > exact:
            raise OptionError(
                f"gradients: this forward has {self._next_id} states (calls x directions x "
                f"steps x samples), more than {dtype} can number exactly ({exact}); pass "
                "fewer samples per call"
            )
        return first

    def _probed_layer(self, r: Runner) -> Any:
        lay, lstm = r.layout, r.lstm
        n0 = lay.rows[0] if lay.steps else 0
        call = _Call([], [])
        outs, hs, cs = [], [], []
        for d in range(r.n_dir):
            h0 = r.h0[d]
            c0 = None if r.c0 is None else r.c0[d]
            b_h = _Block(lay.rows, n0, r.h_out)
            b_c = None if c0 is None else _Block(lay.rows, n0, c0.shape[-1])
            call.h.append(b_h)
            call.c.append(b_c)
            self.leaves.append(_leaf(h0))
            h = h0 + self.leaves[-1]
            c = None
            if c0 is not None:
                self.leaves.append(_leaf(c0))
                c = c0 + self.leaves[-1]
            pieces: list[Tensor] = [h0.new_empty(0)] * lay.steps
            step = _stepper(r, d)
            for t in range(lay.steps) if d == 0 else reversed(range(lay.steps)):
                n = lay.rows[t]
                hn, cn = step(t, h[:n], None if c is None else c[:n])
                hn.register_hook(b_h.catch(t))
                pieces[t] = lay.piece(hn)
                h = hn if n == h.shape[0] else torch.cat([hn, h[n:]])
                if c is not None and cn is not None and b_c is not None:
                    # c_t as passed on, h_t held: hn is computed from cn inside the cell, so
                    # the hook goes on an alias that only the next step and c_n receive
                    cn = cn.view_as(cn)
                    cn.register_hook(b_c.catch(t))
                    c = cn if n == c.shape[0] else torch.cat([cn, c[n:]])
            outs.append(torch.cat(pieces) if pieces else lay.x.new_empty(0))
            hs.append(h)
            cs.append(c)
        self.calls.append(call)
        output = torch.cat(outs, -1) if r.n_dir > 1 else outs[0]
        if not lay.packed and r.call.batch_first:
            output = output.transpose(0, 1)
        if lstm:
            return output, torch.stack(hs), torch.stack([c for c in cs if c is not None])
        return output, torch.stack(hs)

    def _ids_layer(self, r: Runner) -> Any:
        lay = r.layout
        n0 = lay.rows[0] if lay.steps else 0
        dtype, device = r.h0.dtype, r.h0.device
        first = self._take_ids(r.n_dir, lay.steps, n0, dtype)
        outs = []
        for d in range(r.n_dir):
            base = first + d * lay.steps * n0
            ids = torch.arange(base, base + lay.steps * n0, dtype=dtype, device=device)
            ids = ids.reshape(lay.steps, n0)
            if lay.packed:
                seq = torch.cat([ids[t, : lay.rows[t]] for t in range(lay.steps)])
            else:
                seq = ids
            outs.append(seq.unsqueeze(-1).expand(*seq.shape, r.h_out))
        output = torch.cat(outs, -1)
        if not lay.packed and r.call.batch_first:
            output = output.transpose(0, 1)
        output = output.contiguous()
        hn = torch.zeros_like(r.h0)
        if r.c0 is not None:
            return output, hn, torch.zeros_like(r.c0)
        return output, hn


Step = Callable[[int, Tensor, Tensor | None], tuple[Tensor, Tensor | None]]


def _stepper(r: Runner, d: int) -> Step:
    """Direction ``d``'s step ``t`` from state ``(h, c)`` (its first rows): ``(h_t, c_t)``.

    The cell kernel of the layer's kind (``torch._VF.lstm_cell``...: the same equations,
    one autograd node per step, far cheaper than a one-step call of the stack kernel), unwrapped
    so that no sink sees it; a projected LSTM, which has no cell kernel, runs one-step calls of
    the model's own stack kernel.
    """
    w = r.weights[d]
    if r.has_projection:
        def by_stack(t: int, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
            _, hn, cn = r.kernel(t, t, h, c, d)
            return hn, cn

        return by_stack
    wrapped = getattr(torch._VF, CELL_KERNELS[r.call.kind])
    cell = getattr(wrapped, "__wrapped__", wrapped)
    biases = (w[2], w[3]) if r.call.has_biases else (None, None)
    lay = r.layout

    def by_cell(t: int, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
        x_t = lay.step(lay.x, t)
        if c is None:
            return cell(x_t, h, w[0], w[1], *biases), None
        hn, cn = cell(x_t, (h, c), w[0], w[1], *biases)
        return hn, cn

    return by_cell


@contextmanager
def _editing(sink: Probes) -> Iterator[None]:
    kernels.install(sink)
    try:
        yield
    finally:
        kernels.uninstall(sink)


def _total(value: Any) -> Tensor:
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise OptionError(
            f"gradients: score(outputs) must return a float tensor computed from the outputs "
            f"(one value per sample), got {type(value).__name__}; compute it with torch, e.g. "
            "lambda y: y.pow(2).mean(dim=(1, 2))"
        )
    if value.dim() > 1:
        raise OptionError(
            f"gradients: score(outputs) must be one value per sample, got shape "
            f"{tuple(value.shape)}; reduce it over every dim but the batch"
        )
    if not value.requires_grad:
        raise OptionError(
            "gradients: score(outputs) does not depend on the model's outputs through autograd "
            "(it has no grad_fn); compute it from the outputs with torch operations"
        )
    return value.sum()


def _table(blocks: Sequence[_Block | None], n_ids: list[int], width: int) -> Tensor:
    """The states' gradients by id, ``(ids, width)`` on the CPU: NaN past each layer's width,
    and for a block that is None (a layer without a cell state) of ``n_ids`` rows."""
    parts = []
    for block, n in zip(blocks, n_ids, strict=True):
        out = torch.full((n, width), float("nan"), dtype=torch.float64)
        if block is not None and block.rows:
            steps = []
            for rows, g in zip(block.rows, block.grads, strict=True):
                g = torch.zeros(rows, block.width, dtype=torch.float64) if g is None else g
                if rows < block.n0:  # a packed step: rows past it hold no state
                    g = torch.cat([g, g.new_zeros(block.n0 - rows, block.width)])
                steps.append(g.detach().to("cpu", torch.float64))
            out[:, : block.width] = torch.cat(steps)
        parts.append(out)
    return torch.cat(parts) if parts else torch.empty((0, width), dtype=torch.float64)


def extract_with_gradients(model: nn.Module, options: RecordingOptions, args: tuple[Any, ...],
                           kwargs: dict[str, Any], grad: bool, score: Score) -> xr.Dataset:
    """``extract(model, *args, gradients=score, **kwargs)``: the recording, plus ``grad_h``
    (and ``grad_c``); registered with :mod:`seqacts.capture.explaining`."""
    if not callable(score):
        raise OptionError(
            f"gradients: expected score(outputs) -> one value per sample, got "
            f"{type(score).__name__}"
        )
    if options.edits or options.cells:
        raise OptionError(
            f"extract: gradients= with {'edits=' if options.edits else 'cells='} is not "
            "supported (edited runs, and Python cells, which run outside torch's kernels); "
            "take the gradients of the unedited model of torch layers, or drop gradients="
        )
    with rng_kept(model) as rewind:
        ds = extract_with(model, options, args, kwargs, grad=grad)
        grads = state_gradients(model, replace(options, internals=False), args, kwargs, score,
                                ds, rewind)  # fmt: skip
    for name, value in grads.items():
        long_name, description = VARIABLE_DOCS[name]
        ds[name] = value.assign_attrs(long_name=long_name, description=description)
    return ds


def state_gradients(
    model: nn.Module,
    options: RecordingOptions,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    score: Score,
    like: xr.Dataset,
    rewind: Callable[[], None],
) -> dict[str, xr.DataArray]:
    """``grad_h`` (and ``grad_c`` when a layer is an LSTM) laid out as ``like["h"]``.

    ``like`` is what ``options`` recorded of ``model(*args, **kwargs)``; ``rewind`` (from
    :func:`rng_kept`) puts the RNG back before each further forward, so that dropout draws
    the masks it drew in the recorded one.
    """
    rewind()
    probes = Probes(model, "probe")
    with warnings.catch_warnings(), torch.enable_grad(), _editing(probes):
        warnings.simplefilter("ignore")
        total = _total(score(model(*args, **kwargs)))
    cells = [leaf for _, leaf in probes.cell_leaves]
    found = torch.autograd.grad(total, [*probes.leaves, *cells], allow_unused=True)
    for (block, _), grad in zip(probes.cell_leaves, found[len(probes.leaves) :], strict=True):
        block.grads[0] = grad
    blocks_h = [b for call in probes.calls for b in call.h]
    blocks_c = [b for call in probes.calls for b in call.c]
    n_ids = [len(b.rows) * b.n0 for b in blocks_h]
    width = like.sizes["unit"]
    table_h = _table(blocks_h, n_ids, width)
    table_c = _table(blocks_c, n_ids, width)
    rewind()
    ids = _layout_ids(model, options, args, kwargs, like)
    return _gathered(ids, table_h, table_c, like)


def _layout_ids(model: nn.Module, options: RecordingOptions, args: tuple[Any, ...],
                kwargs: dict[str, Any], like: xr.Dataset) -> np.ndarray:
    """Each recorded ``(sample, layer, direction, time)`` position's probe id (NaN: none)."""
    ids = Probes(model, "ids")
    rec = Recorder(model, options)
    with warnings.catch_warnings(), torch.no_grad(), _editing(ids), rec:
        warnings.simplefilter("ignore")
        model(*args, **kwargs)
    laid = rec.to_dataset()["h"]
    if laid.sizes != like["h"].sizes:
        raise OptionError(
            f"gradients: the model's calls differ between two forwards of the same input "
            f"(h {dict(like['h'].sizes)} then {dict(laid.sizes)}); state gradients need a "
            "forward whose calls depend only on the input's shapes"
        )
    return np.asarray(laid.isel(unit=0).values, dtype=np.float64)


def _gathered(ids: np.ndarray, table_h: Tensor, table_c: Tensor,
              like: xr.Dataset) -> dict[str, xr.DataArray]:
    valid = np.isfinite(ids)
    index = torch.from_numpy(ids[valid].astype(np.int64))
    out: dict[str, xr.DataArray] = {}
    any_cell_state = any(has_cell_state(str(k)) for k in like["kind"].values)
    names = [("grad_h", table_h), *([("grad_c", table_c)] if any_cell_state else [])]
    for name, table in names:
        arr = np.full((*ids.shape, table.shape[1]), np.nan, dtype=like["h"].dtype)
        arr[valid] = table.index_select(0, index).numpy()
        out[name] = xr.DataArray(arr, dims=like["h"].dims, coords=like["h"].coords)
    return out


explaining.register(extract_with_gradients)
