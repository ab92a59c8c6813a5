"""Independent float64 reference of PyTorch's recurrent layers, from the equations in its docs.

Plain numpy loops over time; it reads a module's parameters but never runs a torch kernel.
Used by the tests as the ground truth for what seqacts records.

Equations (torch/nn/modules/rnn.py docstrings):
  RNN:  a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh;  h_t = tanh(a_t) or relu(a_t)
  LSTM: i, f, g, o = split(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh); i, f, o sigmoid, g tanh
        c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)  (then h_t = W_hr h_t when proj_size > 0)
  GRU:  r = sigmoid(W_ir x + b_ir + W_hr h + b_hr);  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn));  h_t = (1 - z) * n + z * h_{t-1}
"""

from __future__ import annotations

import numpy as np
import torch


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _param(module: torch.nn.Module, name: str) -> np.ndarray | None:
    p = getattr(module, name, None)
    return None if p is None else p.detach().double().cpu().numpy()


def _step(kind: str, x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr):  # noqa: ANN001, ANN202
    """One timestep for a batch: returns (h, c, internals dict)."""
    gi = x @ w_ih.T + (b_ih if b_ih is not None else 0.0)
    gh = h @ w_hh.T + (b_hh if b_hh is not None else 0.0)
    if kind == "LSTM":
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
        c = f * c + i * g
        h = o * np.tanh(c)
        if w_hr is not None:
            h = h @ w_hr.T
        gates = {"c": c, "input_gate": i, "forget_gate": f, "cell_gate": g, "output_gate": o}
        return h, c, gates
    if kind == "GRU":
        ir, iz, in_ = np.split(gi, 3, axis=-1)
        hr, hz, hn = np.split(gh, 3, axis=-1)
        r, z = _sigmoid(ir + hr), _sigmoid(iz + hz)
        n = np.tanh(in_ + r * hn)
        h = (1.0 - z) * n + z * h
        return h, None, {"reset_gate": r, "update_gate": z, "new_gate": n}
    a = gi + gh
    h = np.tanh(a) if kind == "RNN_TANH" else np.maximum(a, 0.0)
    return h, None, {"preactivation": a}


def reference_stack(
    module: torch.nn.RNNBase,
    x: np.ndarray,
    lengths: np.ndarray | None = None,
    h0: np.ndarray | None = None,
    c0: np.ndarray | None = None,
) -> list[dict[str, np.ndarray]]:
    """Every layer's sequences and states, eval-mode semantics (no dropout).

    ``x`` is batch-major ``(N, T, input)``; ``h0``/``c0`` are PyTorch-shaped
    ``(layers * directions, N, width)``. Returns one dict per layer of ``(N, D, T, width)``
    arrays (NaN at ``t >= length``) -- ``h`` and the internals -- plus ``h_0``, ``h_n``
    (and ``c_0``, ``c_n`` for an LSTM) shaped ``(N, D, width)``.
    """
    kind = module.mode
    x = np.asarray(x, dtype=np.float64)
    n, steps, _ = x.shape
    lengths = np.full(n, steps) if lengths is None else np.asarray(lengths)
    n_dir = 2 if module.bidirectional else 1
    hidden = module.hidden_size
    proj = getattr(module, "proj_size", 0)
    h_out = proj or hidden
    h0 = np.zeros((module.num_layers * n_dir, n, h_out)) if h0 is None else np.asarray(h0)
    c0 = np.zeros((module.num_layers * n_dir, n, hidden)) if c0 is None else np.asarray(c0)
    layers = []
    layer_input = x
    for k in range(module.num_layers):
        result: dict[str, np.ndarray] = {}
        outputs = np.full((n, n_dir, steps, h_out), np.nan)
        for d in range(n_dir):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            w = [_param(module, f"{name}{sfx}") for name in
                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
            for i in range(n):
                h = h0[k * n_dir + d, i]
                c = c0[k * n_dir + d, i]
                order = range(lengths[i]) if d == 0 else range(lengths[i] - 1, -1, -1)
                for t in order:
                    h, c, gates = _step(kind, layer_input[i, t], h, c, *w)
                    outputs[i, d, t] = h
                    for name, value in gates.items():
                        arr = result.setdefault(name, np.full((n, n_dir, steps, hidden), np.nan))
                        arr[i, d, t] = value
                result.setdefault("h_n", np.zeros((n, n_dir, h_out)))[i, d] = h
                if kind == "LSTM":
                    result.setdefault("c_n", np.zeros((n, n_dir, hidden)))[i, d] = c
        result["h"] = outputs
        result["h_0"] = h0[k * n_dir : (k + 1) * n_dir].transpose(1, 0, 2)
        if kind == "LSTM":
            result["c_0"] = c0[k * n_dir : (k + 1) * n_dir].transpose(1, 0, 2)
        layers.append(result)
        # the next layer reads [forward h, backward h]; zeros past a sample's length
        layer_input = np.nan_to_num(outputs.transpose(0, 2, 1, 3).reshape(n, steps, n_dir * h_out))
    return layers


def reference_cell(
    cell: torch.nn.RNNCellBase, x: np.ndarray, h: np.ndarray, c: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """One step of an ``RNNCell``/``LSTMCell``/``GRUCell``: ``h`` (and ``c``) plus internals."""
    if isinstance(cell, torch.nn.LSTMCell):
        kind = "LSTM"
    elif isinstance(cell, torch.nn.GRUCell):
        kind = "GRU"
    else:
        kind = "RNN_RELU" if cell.nonlinearity == "relu" else "RNN_TANH"
    w = [_param(cell, name) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    h_new, c_new, gates = _step(kind, np.asarray(x), np.asarray(h), c, *w, None)
    return {"h": h_new, **gates}
