"""Independent float64 reference of state gradients: a step loop written from the equations.

Plain torch arithmetic in float64 (no recurrent kernel, no module forward, nothing from seqacts):
each step's returned state gets a zero probe added (``h_t + p_t``), and autograd's derivative of
the score with respect to ``p_t`` is the total derivative with respect to ``h_t``. The cell state
is probed as passed to the next step (``h_t`` computed from it before the probe).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["reference_stack_grads", "reference_cell_grads"]


def _p(module: nn.Module, name: str) -> Tensor | None:
    value = getattr(module, name, None)
    return None if value is None else value.detach().to(torch.float64)


def _step(kind: str, x: Tensor, h: Tensor, c: Tensor | None, w: dict[str, Tensor | None],
          nonlinearity: str = "tanh") -> tuple[Tensor, Tensor | None]:
    def affine(v: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
        assert weight is not None
        out = v @ weight.T
        return out if bias is None else out + bias

    gi = affine(x, w["w_ih"], w["b_ih"])
    gh = affine(h, w["w_hh"], w["b_hh"])
    if kind == "LSTM":
        assert c is not None
        i, f, g, o = (gi + gh).chunk(4, -1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        if w["w_hr"] is not None:
            h_new = h_new @ w["w_hr"].T
        return h_new, c_new
    if kind == "GRU":
        ir, iz, in_ = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return (1 - z) * n + z * h, None
    a = gi + gh
    return (torch.relu(a) if nonlinearity == "relu" else torch.tanh(a)), None


def _kind(module: nn.Module) -> str:
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return "LSTM"
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return "GRU"
    return "RNN"


def reference_stack_grads(
    module: nn.RNNBase, x: Tensor, lengths: list[int], score: Callable[[Tensor], Tensor]
) -> tuple[dict[tuple[int, int], Tensor], dict[tuple[int, int], Tensor]]:
    """``(grad_h, grad_c)`` by ``(layer, direction)``, each ``(N, T, W)``; zeros past lengths.

    ``x`` is ``(N, T, I)``; ``score`` takes the top layer's output ``(N, T, D * H_out)``
    (zeros past each length) and returns one value per sample.
    """
    kind = _kind(module)
    n, steps = x.shape[0], x.shape[1]
    n_dir = 2 if module.bidirectional else 1
    valid = torch.arange(steps).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (N, T)
    probes_h: dict[tuple[int, int], Tensor] = {}
    probes_c: dict[tuple[int, int], Tensor] = {}
    layer_in = x.detach().to(torch.float64)
    h_out = module.proj_size or module.hidden_size
    for k in range(module.num_layers):
        outs = []
        for d in range(n_dir):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            w = {name: _p(module, f"{pname}{sfx}") for name, pname in (
                ("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                ("b_hh", "bias_hh"), ("w_hr", "weight_hr"))}
            ph = torch.zeros(n, steps, h_out, dtype=torch.float64, requires_grad=True)
            pc = torch.zeros(n, steps, module.hidden_size, dtype=torch.float64, requires_grad=True)
            probes_h[k, d], probes_c[k, d] = ph, pc
            h = torch.zeros(n, h_out, dtype=torch.float64)
            c = torch.zeros(n, module.hidden_size, dtype=torch.float64) if kind == "LSTM" else None
            seq: list[Tensor] = [h] * steps
            for t in range(steps) if d == 0 else reversed(range(steps)):
                h_new, c_new = _step(kind, layer_in[:, t], h, c, w,
                                     getattr(module, "nonlinearity", "tanh"))
                m = valid[:, t].unsqueeze(1)
                h = torch.where(m, h_new + ph[:, t], h)
                if c is not None and c_new is not None:
                    c = torch.where(m, c_new + pc[:, t], c)
                seq[t] = torch.where(m, h, torch.zeros_like(h))
            outs.append(torch.stack(seq, 1))
        layer_in = torch.cat(outs, -1)
    keys = list(probes_h)
    wanted = [probes_h[key] for key in keys] + ([probes_c[key] for key in keys]
                                                 if kind == "LSTM" else [])
    grads = torch.autograd.grad(score(layer_in).sum(), wanted, allow_unused=True)
    gh = {key: g if g is not None else torch.zeros_like(probes_h[key])
          for key, g in zip(keys, grads[: len(keys)], strict=True)}
    gc = {} if kind != "LSTM" else {
        key: g if g is not None else torch.zeros_like(probes_c[key])
        for key, g in zip(keys, grads[len(keys):], strict=True)}
    return gh, gc


def reference_cell_grads(
    cell: nn.RNNCellBase, x: Tensor, score: Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor | None]:
    """``(grad_h, grad_c)`` ``(N, T, H)`` of a loop ``h_t = cell(x_t, h_{t-1})`` from zeros;
    ``score`` takes the stacked ``h`` ``(N, T, H)``."""
    kind = _kind(cell)
    n, steps = x.shape[0], x.shape[1]
    w = {"w_ih": _p(cell, "weight_ih"), "w_hh": _p(cell, "weight_hh"),
         "b_ih": _p(cell, "bias_ih"), "b_hh": _p(cell, "bias_hh"), "w_hr": None}
    ph = torch.zeros(n, steps, cell.hidden_size, dtype=torch.float64, requires_grad=True)
    pc = torch.zeros(n, steps, cell.hidden_size, dtype=torch.float64, requires_grad=True)
    h = torch.zeros(n, cell.hidden_size, dtype=torch.float64)
    c = torch.zeros_like(h) if kind == "LSTM" else None
    seq = []
    for t in range(steps):
        h_new, c_new = _step(kind, x[:, t].detach().to(torch.float64), h, c, w,
                             getattr(cell, "nonlinearity", "tanh"))
        h = h_new + ph[:, t]
        c = None if c_new is None else c_new + pc[:, t]
        seq.append(h)
    wanted = [ph, pc] if kind == "LSTM" else [ph]
    grads = torch.autograd.grad(score(torch.stack(seq, 1)).sum(), wanted, allow_unused=True)
    return grads[0], (grads[1] if kind == "LSTM" else None)
