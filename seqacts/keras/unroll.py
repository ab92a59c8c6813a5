"""Re-run one call of a Keras recurrent layer step by step through its cell, keeping every state.

The loop is the one Keras' ``backend.rnn`` runs: the cell called per step on the step's input
and the previous states (``cell(x_t, states, training=...)``), the new states kept only where
the step is not masked (``where(mask_t, new, old)``), in reverse time order when the layer has
``go_backwards``. The gates are then one batched product from the cell's own weights over the
whole sequence, in the cell's order of operations (``implementation=2``). Values come back as
NumPy arrays indexed by the *input's* time step (a backward run's step ``t`` is the state after
reading ``x_t``), with the layer's own visible output recomputed alongside to be compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from ..kinds.keras_kinds import KERAS_LSTM, KERNEL_ORDER
from .runs import CellRun, LayerRun, cell_run, numpy_of

__all__ = ["initial_states", "run_layer", "torch_fused_lstm"]


def _no_grad() -> AbstractContextManager[Any]:
    import keras

    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return nullcontext()


def _per_cell(states: Any, n_cells: int) -> list[list[Any]]:
    from keras import tree

    if n_cells == 1:
        return [list(states) if tree.is_nested(states) else [states]]
    return [list(s) if tree.is_nested(s) else [s] for s in states]


def initial_states(rnn: Any, sequences: Any, given: Any) -> list[list[Any]]:
    """The states ``rnn.call`` starts from, per cell (as ``RNN.call`` derives them).

    Read *before* the call: a stateful layer overwrites its states with the new ones.
    """
    from keras import ops, tree

    if given is None:
        if rnn.stateful:
            given = tree.map_structure(ops.copy, rnn.states)
        else:
            given = rnn.get_initial_state(batch_size=ops.shape(sequences)[0])
    if not tree.is_nested(given):
        given = [given]
    given = tree.map_structure(
        lambda s: ops.convert_to_tensor(s, dtype=rnn.cell.compute_dtype), list(given))
    cells = rnn.cell.cells if type(rnn.cell).__name__ == "StackedRNNCells" else [rnn.cell]
    return _per_cell(given, len(cells))


def _where(keep: Any, new: Any, old: Any) -> Any:
    from keras import ops

    return ops.where(keep, new, old)


def run_layer(rnn: Any, cells: Sequence[Any], x: Any, states: list[list[Any]], mask: Any,
              training: bool, internals: tuple[str, ...]) -> LayerRun:
    """Run ``rnn``'s recurrence over ``x`` (sample, time, feature) from ``states``.

    ``mask`` is the call's mask (sample, time) or ``None``; ``internals`` the variables to add.
    """
    try:
        if mask is None and torch_fused_lstm(rnn):
            return _run_torch_lstm(rnn, x, states[0], internals)
        import keras

        if keras.backend.backend() == "jax" and not rnn.unroll:
            from .unroll_jax import jax_fused_gru, run_fused_gru, run_scan

            if jax_fused_gru(rnn, mask):
                return run_fused_gru(rnn, x, states[0], internals)
            return run_scan(rnn, cells, x, states, mask, training, internals)
        return _run(rnn, cells, x, states, mask, training, internals)
    finally:
        rnn._maybe_reset_dropout_masks(rnn.cell)  # as RNN.call does: nothing left on the cell


def _run(rnn: Any, cells: Sequence[Any], x: Any, states: list[list[Any]], mask: Any,
         training: bool, internals: tuple[str, ...]) -> LayerRun:
    from keras import ops, tree

    with _no_grad():
        n, steps = int(ops.shape(x)[0]), int(ops.shape(x)[1])
        order = range(steps - 1, -1, -1) if rnn.go_backwards else range(steps)
        masks = None
        if mask is not None:
            if tree.is_nested(mask):
                mask = tree.flatten(mask)[0]
            masks = ops.cast(ops.convert_to_tensor(mask), "bool")
        start = [list(s) for s in states]
        inputs: list[list[Any]] = [[] for _ in cells]
        kept: list[list[list[Any]]] = [[] for _ in cells]
        outputs: list[Any] = []
        out_prev: Any = None
        for t in order:
            step = x[:, t]
            new_states = []
            for k, cell in enumerate(cells):
                inputs[k].append(step)
                kwargs = {"training": training} if getattr(cell, "_call_has_training_arg",
                                                           False) else {}
                step, new = cell(step, states[k], **kwargs)
                new_states.append(list(new) if tree.is_nested(new) else [new])
            if out_prev is None:
                out_prev = ops.zeros_like(step)
            if masks is not None:
                keep = ops.expand_dims(masks[:, t], -1)
                new_states = [[_where(keep, a, b) for a, b in zip(new, old, strict=True)]
                              for new, old in zip(new_states, states, strict=True)]
                zero = ops.zeros_like(step) if rnn.zero_output_for_mask else out_prev
                step = _where(keep, step, zero)
            states = new_states
            out_prev = step
            outputs.append(step)
            for k in range(len(cells)):
                kept[k].append(states[k])
        visible = ops.stack(outputs, axis=1) if rnn.return_sequences else outputs[-1]
        runs = [_cell_run(cell, inputs[k], kept[k], start[k], internals, rnn.go_backwards)
                for k, cell in enumerate(cells)]
        flags = (ops.convert_to_numpy(masks).astype(bool) if masks is not None
                 else np.ones((n, steps), dtype=bool))
    return LayerRun(runs, flags, visible)


def _cell_run(cell: Any, inputs: list[Any], kept: list[list[Any]], start: list[Any],
              internals: tuple[str, ...], backwards: bool) -> CellRun:
    """One cell's states (and internals) from the steps in processing order."""
    from keras import ops

    h_seq = ops.stack([s[0] for s in kept], axis=1)
    c_seq = ops.stack([s[1] for s in kept], axis=1) if len(kept[0]) > 1 else None
    return cell_run(cell, ops.stack(inputs, axis=1), h_seq, c_seq, start, internals, backwards)


def torch_fused_lstm(rnn: Any) -> bool:
    """Whether an unmasked call of ``rnn`` takes the torch backend's own LSTM loop.

    ``keras.layers.LSTM`` hands the whole sequence to ``backend.lstm`` first; on the torch
    backend off CUDA that runs ``_fallback_lstm``: the input projections of all steps in one
    product, then per step ``z = x_proj[t] + h @ recurrent_kernel``.
    """
    import keras

    return (keras.backend.backend() == "torch" and isinstance(rnn, keras.layers.LSTM)
            and rnn.use_cudnn in ("auto", True) and not rnn.recurrent_dropout
            and not _on_cuda(rnn.cell.kernel))


def _on_cuda(variable: Any) -> bool:
    from keras import ops

    return str(getattr(ops.convert_to_tensor(variable), "device", "cpu")).startswith("cuda")


def _run_torch_lstm(rnn: Any, x: Any, start: list[Any], internals: tuple[str, ...]) -> LayerRun:
    """``_fallback_lstm``'s operations, in its order, keeping every step's gates and states."""
    import torch
    from keras import ops

    cell = rnn.cell
    with torch.no_grad():
        kernel = ops.convert_to_tensor(cell.kernel)
        recurrent = ops.convert_to_tensor(cell.recurrent_kernel)
        bias = ops.convert_to_tensor(cell.bias) if cell.use_bias else None
        inputs = ops.convert_to_tensor(x).to(kernel.dtype)
        if rnn.go_backwards:
            inputs = torch.flip(inputs, dims=[1])
        x_proj = torch.matmul(inputs.permute(1, 0, 2), kernel)
        if bias is not None:
            x_proj = x_proj + bias
        h, c = (ops.convert_to_tensor(s).to(kernel.dtype) for s in start)
        act, rec = cell.activation, cell.recurrent_activation
        keep: dict[str, list[Any]] = {n: [] for n in ("h", "c", *KERNEL_ORDER[KERAS_LSTM])}
        for t in range(x_proj.shape[0]):
            z = x_proj[t] + torch.matmul(h, recurrent)
            z_i, z_f, z_c, z_o = torch.chunk(z, 4, dim=1)
            c = rec(z_f) * c + rec(z_i) * act(z_c)
            h = rec(z_o) * act(c)
            keep["h"].append(h)
            keep["c"].append(c)
            if any(n in internals for n in KERNEL_ORDER[KERAS_LSTM]):
                for name, part, f in (("input_gate", z_i, rec), ("forget_gate", z_f, rec),
                                      ("cell_gate", z_c, act), ("output_gate", z_o, rec)):
                    keep[name].append(f(part))

        def series(name: str) -> np.ndarray:
            a = torch.stack(keep[name], dim=1).cpu().numpy()
            return np.ascontiguousarray(a[:, ::-1] if rnn.go_backwards else a)

        visible = torch.stack(keep["h"], dim=1) if rnn.return_sequences else h
        run = CellRun(
            h=series("h"), h0=numpy_of(start[0]), hn=h.cpu().numpy(), c0=numpy_of(start[1]),
            cn=c.cpu().numpy(),
            extra={n: series(n) for n in internals if n in KERNEL_ORDER[KERAS_LSTM] or n == "c"},
        )
    n, steps = int(x_proj.shape[1]), int(x_proj.shape[0])
    return LayerRun([run], np.ones((n, steps), dtype=bool), visible)
