"""Independent float64 reference of PyTorch's recurrent layers, from the equations in its docs.

Plain numpy loops over time: it reads a module's parameters but never runs a torch recurrent
kernel or module, and it imports nothing from seqacts. The tests use it as the ground truth for
what seqacts records; ``tests/test_reference.py`` checks it against torch itself.

Equations (``torch/nn/modules/rnn.py`` docstrings), ``x`` the input, ``h`` the previous state:

- RNN:  ``a = W_ih x + b_ih + W_hh h + b_hh``; ``h' = tanh(a)`` or ``relu(a)``
- LSTM: ``i, f, g, o = split(W_ih x + b_ih + W_hh h + b_hh)``; ``i, f, o`` sigmoid, ``g`` tanh;
  ``c' = f * c + i * g``; ``h' = o * tanh(c')``, then ``h' = W_hr h'`` when ``proj_size > 0``
- GRU:  ``r, z`` = sigmoid of their slices of ``W_ih x + b_ih + W_hh h + b_hh``;
  ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``; ``h' = (1 - z) * n + z * h``
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["INTERNALS", "StepEdit", "reference_cell", "reference_stack"]

#: An edit applied by hand after a step: (state "h" or "c", unit indices, values for them).
StepEdit = tuple[str, Sequence[int], np.ndarray | float]

#: Per-timestep internals of each kind, in PyTorch's gate order (i, f, g, o; r, z, n).
INTERNALS: dict[str, tuple[str, ...]] = {
    "RNN_TANH": ("preactivation",),
    "RNN_RELU": ("preactivation",),
    "LSTM": ("c", "input_gate", "forget_gate", "cell_gate", "output_gate"),
    "GRU": ("reset_gate", "update_gate", "new_gate"),
}


@dataclass(frozen=True)
class _Weights:
    """One direction of one layer (or one cell), as float64 arrays."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray | None
    b_hh: np.ndarray | None
    w_hr: np.ndarray | None


def _kind(module: nn.Module) -> str:
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return "LSTM"
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return "GRU"
    if isinstance(module, (nn.RNN, nn.RNNCell)):
        return "RNN_RELU" if module.nonlinearity == "relu" else "RNN_TANH"
    if isinstance(module, nn.RNNBase) and module.mode in INTERNALS:
        return str(module.mode)
    raise TypeError(
        f"reference: expected an nn.RNN/LSTM/GRU or one of their cells, got {type(module).__name__}"
    )


def _param(module: nn.Module, name: str) -> np.ndarray:
    value = getattr(module, name, None)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"reference: {type(module).__name__} has no parameter {name!r}")
    return value.detach().to("cpu", torch.float64).numpy()


def _weights(module: nn.Module, suffix: str = "") -> _Weights:
    bias = bool(module.bias)
    proj = getattr(module, "proj_size", 0)
    return _Weights(
        w_ih=_param(module, f"weight_ih{suffix}"),
        w_hh=_param(module, f"weight_hh{suffix}"),
        b_ih=_param(module, f"bias_ih{suffix}") if bias else None,
        b_hh=_param(module, f"bias_hh{suffix}") if bias else None,
        w_hr=_param(module, f"weight_hr{suffix}") if proj else None,
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp(-log(1 + e^-x)) neither overflows nor loses relative precision for large |x|
    return np.exp(-np.logaddexp(0.0, -x))


def _affine(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    y = x @ w.T
    return y if b is None else y + b


def _step(
    kind: str, w: _Weights, x: np.ndarray, h: np.ndarray, c: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """One timestep for inputs of shape ``(..., input)``: the new ``h``, ``c`` and internals."""
    gi = _affine(x, w.w_ih, w.b_ih)
    gh = _affine(h, w.w_hh, w.b_hh)
    if kind == "LSTM":
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
        c = f * c + i * g
        h = o * np.tanh(c)
        if w.w_hr is not None:
            h = h @ w.w_hr.T
        return h, c, {"c": c, "input_gate": i, "forget_gate": f, "cell_gate": g, "output_gate": o}
    if kind == "GRU":
        i_r, i_z, i_n = np.split(gi, 3, axis=-1)
        h_r, h_z, h_n = np.split(gh, 3, axis=-1)
        r, z = _sigmoid(i_r + h_r), _sigmoid(i_z + h_z)
        # b_hn sits inside the reset product, which is why a GRU keeps two biases
        n = np.tanh(i_n + r * h_n)
        return (1.0 - z) * n + z * h, None, {"reset_gate": r, "update_gate": z, "new_gate": n}
    a = gi + gh
    h = np.tanh(a) if kind == "RNN_TANH" else np.maximum(a, 0.0)
    return h, None, {"preactivation": a}


def _edited(
    w: _Weights,
    h: np.ndarray,
    c: np.ndarray | None,
    internals: dict[str, np.ndarray],
    edits: Sequence[StepEdit],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply edits to one step's state: cell-state edits first, which recompute
    ``h = o * tanh(c)`` (then ``W_hr``), then hidden-state edits."""
    for state, units, values in sorted(edits, key=lambda e: e[0] != "c"):
        idx = list(units)
        if state == "c":
            c = np.array(c, dtype=np.float64)
            c[..., idx] = values
            h = internals["output_gate"] * np.tanh(c)
            if w.w_hr is not None:
                h = h @ w.w_hr.T
            internals["c"] = c
        else:
            h = np.array(h, dtype=np.float64)
            h[..., idx] = values
    return h, c


def _initial(given: np.ndarray | None, shape: tuple[int, int, int], name: str) -> np.ndarray:
    if given is None:
        return np.zeros(shape)
    arr = np.asarray(given, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"reference_stack: expected {name} of shape {shape}, got {arr.shape}")
    return arr


def reference_stack(
    module: nn.RNNBase,
    x: np.ndarray,
    lengths: np.ndarray | None = None,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
    edit: Callable[[int, int, int, int], Sequence[StepEdit]] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Run a fused ``nn.RNN``/``nn.LSTM``/``nn.GRU`` stack in float64 numpy, layer by layer.

    Eval-mode semantics: inter-layer dropout is never applied, whatever ``module.training``.

    Parameters
    ----------
    module : nn.RNNBase
        The stack whose parameters are read (any dtype or device).
    x : np.ndarray
        Input ``(N, T, input_size)``, always batch-major whatever ``module.batch_first``.
    lengths : np.ndarray, optional
        ``(N,)`` valid steps per sample, as for ``pack_padded_sequence``; default all ``T``.
        Steps ``t >= length`` are never read.
    h0 : np.ndarray, optional
        ``(num_layers * D, N, H_out)`` like PyTorch (``H_out = proj_size or hidden_size``);
        default zeros.
    c0 : np.ndarray, optional
        ``(num_layers * D, N, hidden_size)`` for an LSTM; default zeros.
    edit : callable, optional
        ``edit(layer, direction, sample, t)`` -> list of ``(state, units, values)`` applied
        right after step ``t``: ``"h"`` sets those units of ``h_t``, ``"c"`` sets those units
        of ``c_t`` and recomputes ``h_t = o_t * tanh(c_t)`` (times ``W_hr``). The edited state
        is what the next step, the next layer and the returned values see.

    Returns
    -------
    list of dict of str to np.ndarray
        One dict per layer. ``h`` ``(N, D, T, H_out)`` and the internals ``(N, D, T, hidden)``
        -- LSTM ``c``, ``input_gate``, ``forget_gate``, ``cell_gate``, ``output_gate``; GRU
        ``reset_gate``, ``update_gate``, ``new_gate``; RNN ``preactivation`` (before the
        nonlinearity) -- NaN at ``t >= length``. ``h_0``, ``h_n`` ``(N, D, H_out)`` and for an
        LSTM ``c_0``, ``c_n`` ``(N, D, hidden)``. ``D`` is 2 for a bidirectional stack, whose
        backward direction consumes steps ``length - 1 .. 0`` and stores at ``t`` its state
        after consuming step ``t``; its ``h_n`` is the state after step 0.
    """
    kind = _kind(module)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != module.input_size:
        raise ValueError(
            f"reference_stack: expected x of shape (N, T, {module.input_size}), got {x.shape}"
        )
    n, steps, _ = x.shape
    lengths = np.full(n, steps) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if lengths.shape != (n,) or (lengths < 0).any() or (lengths > steps).any():
        raise ValueError(
            f"reference_stack: expected lengths of shape ({n},) in [0, {steps}], got {lengths}"
        )
    n_dir = 2 if module.bidirectional else 1
    hidden = module.hidden_size
    h_out = getattr(module, "proj_size", 0) or hidden
    h0 = _initial(h0, (module.num_layers * n_dir, n, h_out), "h0")
    c0 = _initial(c0, (module.num_layers * n_dir, n, hidden), "c0")

    layers = []
    layer_input = x
    for k in range(module.num_layers):
        out: dict[str, np.ndarray] = {"h": np.full((n, n_dir, steps, h_out), np.nan)}
        out.update({name: np.full((n, n_dir, steps, hidden), np.nan) for name in INTERNALS[kind]})
        out["h_0"] = h0[k * n_dir : (k + 1) * n_dir].transpose(1, 0, 2).copy()
        out["h_n"] = np.full((n, n_dir, h_out), np.nan)
        if kind == "LSTM":
            out["c_0"] = c0[k * n_dir : (k + 1) * n_dir].transpose(1, 0, 2).copy()
            out["c_n"] = np.full((n, n_dir, hidden), np.nan)
        for d in range(n_dir):
            w = _weights(module, f"_l{k}" + ("_reverse" if d else ""))
            for s in range(n):
                h, c = h0[k * n_dir + d, s], c0[k * n_dir + d, s]
                order = range(lengths[s]) if d == 0 else range(lengths[s] - 1, -1, -1)
                for t in order:
                    h, c, internals = _step(kind, w, layer_input[s, t], h, c)
                    if edit is not None:
                        h, c = _edited(w, h, c, internals, edit(k, d, s, t))
                    out["h"][s, d, t] = h
                    for name, value in internals.items():
                        out[name][s, d, t] = value
                out["h_n"][s, d] = h
                if kind == "LSTM":
                    out["c_n"][s, d] = c
        layers.append(out)
        # [forward h, backward h] along features; padding stays NaN so a stray read shows up
        layer_input = out["h"].transpose(0, 2, 1, 3).reshape(n, steps, n_dir * h_out)
    return layers


def reference_cell(
    cell: nn.RNNCellBase,
    x: np.ndarray,
    h: np.ndarray,
    c: np.ndarray | None = None,
    edits: Sequence[StepEdit] = (),
) -> dict[str, np.ndarray]:
    """One step of an ``nn.RNNCell`` (tanh or relu), ``nn.LSTMCell`` or ``nn.GRUCell``.

    Parameters
    ----------
    cell : nn.RNNCellBase
        The cell whose parameters are read (any dtype or device).
    x : np.ndarray
        Input ``(N, input_size)`` (or unbatched ``(input_size,)``).
    h : np.ndarray
        Previous hidden state ``(N, hidden_size)``.
    c : np.ndarray, optional
        Previous cell state of an ``LSTMCell``, ``(N, hidden_size)``; default zeros.
    edits : list of (state, units, values), optional
        Applied to the step's result as in :func:`reference_stack` (``values`` broadcast over
        ``(N, units)``).

    Returns
    -------
    dict of str to np.ndarray
        ``h`` and the internals of the kind (``c`` and the four gates for an LSTMCell, the three
        gates for a GRUCell, ``preactivation`` for an RNNCell), each ``(N, hidden_size)``.
    """
    kind = _kind(cell)
    h = np.asarray(h, dtype=np.float64)
    if kind == "LSTM":
        c = np.zeros_like(h) if c is None else np.asarray(c, dtype=np.float64)
    w = _weights(cell)
    h_new, c_new, internals = _step(kind, w, np.asarray(x, dtype=np.float64), h, c)
    if edits:
        h_new, c_new = _edited(w, h_new, c_new, internals, edits)
    return {"h": h_new, **internals}
