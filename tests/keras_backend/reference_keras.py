"""Float64 NumPy references for Keras' recurrent cells, written from the Keras documentation's
equations (keras.io: LSTMCell, GRUCell with both ``reset_after``, SimpleRNNCell), never calling
Keras. Weights come as Keras stores them: ``kernel`` (input, units * gates), ``recurrent_kernel``
(units, units * gates), ``bias``; gates side by side in the order i, f, c, o and z, r, h."""

from __future__ import annotations

import numpy as np

ACTIVATIONS = {
    "tanh": np.tanh,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "relu": lambda a: np.maximum(a, 0.0),
    "hard_sigmoid": lambda a: np.clip(a / 6.0 + 0.5, 0.0, 1.0),
    "linear": lambda a: a,
}


def lstm_step(x, h, c, w, act="tanh", rec="sigmoid"):
    kernel, recurrent, bias = (np.asarray(v, np.float64) for v in w)
    z = x @ kernel + h @ recurrent + bias
    i, f, g, o = np.split(z, 4, axis=-1)
    i, f, o = ACTIVATIONS[rec](i), ACTIVATIONS[rec](f), ACTIVATIONS[rec](o)
    g = ACTIVATIONS[act](g)
    c_new = f * c + i * g
    h_new = o * ACTIVATIONS[act](c_new)
    gates = {"input_gate": i, "forget_gate": f, "cell_gate": g, "output_gate": o}
    return h_new, c_new, gates


def gru_step(x, h, w, reset_after=True, act="tanh", rec="sigmoid"):
    kernel, recurrent, bias = (np.asarray(v, np.float64) for v in w)
    u = recurrent.shape[0]
    if reset_after:  # bias (2, 3u): input bias, recurrent bias
        xb, hb = bias[0], bias[1]
        xz, xr, xh = np.split(x @ kernel + xb, 3, axis=-1)
        hz, hr, hh = np.split(h @ recurrent + hb, 3, axis=-1)
        z = ACTIVATIONS[rec](xz + hz)
        r = ACTIVATIONS[rec](xr + hr)
        n = ACTIVATIONS[act](xh + r * hh)
    else:  # bias (3u,): input bias only
        xz, xr, xh = np.split(x @ kernel + bias, 3, axis=-1)
        z = ACTIVATIONS[rec](xz + h @ recurrent[:, :u])
        r = ACTIVATIONS[rec](xr + h @ recurrent[:, u : 2 * u])
        n = ACTIVATIONS[act](xh + (r * h) @ recurrent[:, 2 * u :])
    h_new = z * h + (1.0 - z) * n
    return h_new, {"update_gate": z, "reset_gate": r, "new_gate": n}


def simple_step(x, h, w, act="tanh"):
    kernel, recurrent, bias = (np.asarray(v, np.float64) for v in w)
    a = x @ kernel + bias + h @ recurrent
    return ACTIVATIONS[act](a), {"preactivation": a}


def run(kind, x, weights, *, h0=None, c0=None, mask=None, backwards=False, **options):
    """One direction over ``x`` (sample, time, feature): per step h, c and gates, indexed by
    the input's time step; a masked step carries h and c unchanged (its gates are computed
    from the carried state and the step's input). Returns a dict of (sample, time, unit)."""
    x = np.asarray(x, np.float64)
    n, steps = x.shape[:2]
    units = np.asarray(weights[1]).shape[0]
    h = np.zeros((n, units)) if h0 is None else np.asarray(h0, np.float64)
    c = np.zeros((n, units)) if c0 is None else np.asarray(c0, np.float64)
    out: dict[str, np.ndarray] = {}
    order = range(steps - 1, -1, -1) if backwards else range(steps)
    first = {"h0": h.copy(), "c0": c.copy()}
    for t in order:
        if kind == "LSTM":
            h_new, c_new, gates = lstm_step(x[:, t], h, c, weights, **options)
        elif kind == "GRU":
            (h_new, gates), c_new = gru_step(x[:, t], h, weights, **options), c
        else:
            (h_new, gates), c_new = simple_step(x[:, t], h, weights, **options), c
        keep = np.ones((n, 1), bool) if mask is None else np.asarray(mask)[:, t, None].astype(bool)
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        values = {"h": h, **gates}
        if kind == "LSTM":
            values["c"] = c
        for name, v in values.items():
            out.setdefault(name, np.zeros((n, steps, v.shape[-1])))[:, t] = v
    out.update(first, hn=h, cn=c)
    return out
