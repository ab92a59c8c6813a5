"""The jax backend's recurrence, re-run as Keras runs it: one ``jax.lax.scan`` over the steps.

Keras' jax ``backend.rnn`` scans a step that calls the cell and, under a mask, keeps the new
states only at unmasked steps (``where(is_masked, old, new)``); this is that step, with the
per-step values the layer's output does not already hold (a cell state, a later cell's
input) as further outputs of the scan: XLA compiles the scan as one program, and outputs it
does not need to keep can change how it fuses the step's operations, and with it the last
bits. ``lax.scan(reverse=True)``
stacks a backward run's outputs at the index of the input step they consumed, which is the
dataset's time order already.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .runs import LayerRun, cell_run

__all__ = ["jax_fused_gru", "run_fused_gru", "run_scan"]


def jax_fused_gru(rnn: Any, mask: Any) -> bool:
    """Whether the call takes the jax backend's own GRU loop (``backend.gru``): a
    ``keras.layers.GRU`` with ``reset_after``, no mask, no unroll, no recurrent dropout."""
    import keras

    return (isinstance(rnn, keras.layers.GRU) and rnn.cell.reset_after and mask is None
            and not rnn.unroll and rnn.use_cudnn in ("auto", True)
            and not rnn.recurrent_dropout)


def run_fused_gru(rnn: Any, x: Any, start: list[Any], internals: tuple[str, ...]) -> LayerRun:
    """``backend.gru``'s operations on jax, in its order: the input projections of all steps
    in one product, then a scan of ``h @ recurrent_kernel + recurrent_bias`` per step."""
    import jax.numpy as jnp
    from jax import lax

    cell = rnn.cell
    hidden = cell.recurrent_kernel.shape[0]
    kernel, recurrent = jnp.asarray(cell.kernel), jnp.asarray(cell.recurrent_kernel)
    if cell.bias is not None:
        bias = jnp.asarray(cell.bias)
        input_bias, recurrent_bias = bias[0], bias[1]
    else:
        input_bias = recurrent_bias = jnp.zeros(3 * hidden)
    inputs = jnp.asarray(x)
    if rnn.go_backwards:
        inputs = jnp.flip(inputs, axis=1)
    x_all = jnp.swapaxes(jnp.matmul(inputs, kernel) + input_bias, 0, 1)
    act, rec = cell.activation, cell.recurrent_activation

    def step(h: Any, x_t: Any) -> tuple[Any, Any]:
        h_all = jnp.matmul(h, recurrent) + recurrent_bias
        x_z, x_r, x_h = jnp.split(x_t, 3, axis=-1)
        h_z, h_r, h_h = jnp.split(h_all, 3, axis=-1)
        z = rec(x_z + h_z)
        r = rec(x_r + h_r)
        hh = act(x_h + r * h_h)
        h_new = z * h + (1 - z) * hh
        return h_new, h_new

    h_last, outputs = lax.scan(step, jnp.asarray(start[0]), x_all)
    h_seq = jnp.swapaxes(outputs, 0, 1)
    run = cell_run(cell, inputs, h_seq, None, start, internals, bool(rnn.go_backwards))
    n, steps = int(h_seq.shape[0]), int(h_seq.shape[1])
    visible = h_seq if rnn.return_sequences else h_last
    return LayerRun([run], np.ones((n, steps), dtype=bool), visible)


def run_scan(rnn: Any, cells: Sequence[Any], x: Any, states: list[list[Any]], mask: Any,
             training: bool, internals: tuple[str, ...]) -> LayerRun:
    """:func:`seqacts.keras.unroll.run_layer` on the jax backend."""
    import jax.numpy as jnp
    from jax import lax
    from keras import ops, tree
    from keras.src.backend.common import stateless_scope

    if mask is not None and tree.is_nested(mask):
        mask = tree.flatten(mask)[0]
    inputs = jnp.swapaxes(jnp.asarray(x), 0, 1)
    flags = None if mask is None else jnp.swapaxes(jnp.asarray(mask).astype("bool"), 0, 1)
    # the top cell's h is the scan's output unless masked steps zero the output
    derived = flags is None or not rnn.zero_output_for_mask

    def step(carry: list[list[Any]], xs: Any) -> tuple[Any, Any]:
        current, current_mask = xs if flags is not None else (xs, None)
        seen, new_states = [], []
        for k, cell in enumerate(cells):
            seen.append(current)
            kwargs = {"training": training} if getattr(cell, "_call_has_training_arg",
                                                       False) else {}
            current, new = cell(current, carry[k], **kwargs)
            new_states.append(list(new) if tree.is_nested(new) else [new])
        output = current
        if current_mask is not None:
            is_masked = jnp.all(jnp.logical_not(current_mask[:, None]), axis=-1, keepdims=True)
            if rnn.zero_output_for_mask:
                output = jnp.where(is_masked, jnp.zeros_like(output), output)
            else:
                output = jnp.where(is_masked, carry[-1][0], output)
            new_states = tree.map_structure(lambda s, ns: jnp.where(is_masked, s, ns), carry,
                                            new_states)
        last = [s if k < len(cells) - 1 or not derived else s[1:]
                for k, s in enumerate(new_states)]
        return new_states, (last, seen[1:], output)

    scope = (contextlib.nullcontext() if stateless_scope.in_stateless_scope()
             else stateless_scope.StatelessScope())
    with scope:
        _, (kept, later, outputs) = lax.scan(
            step, [list(s) for s in states], (inputs, flags) if flags is not None else inputs,
            reverse=bool(rnn.go_backwards))
    # (time, sample, ...) in input-time order; the cell runs expect processing order
    def ordered(t: Any) -> Any:
        t = jnp.swapaxes(t, 0, 1)
        return jnp.flip(t, axis=1) if rnn.go_backwards else t

    if derived:
        kept[-1] = [outputs, *kept[-1]]
    seen = [inputs, *later]
    runs = [cell_run(cell, ordered(seen[k]), ordered(kept[k][0]),
                     ordered(kept[k][1]) if len(kept[k]) > 1 else None, states[k], internals,
                     bool(rnn.go_backwards))
            for k, cell in enumerate(cells)]
    visible = ordered(outputs) if rnn.return_sequences else ordered(outputs)[:, -1]
    n, steps = int(inputs.shape[1]), int(inputs.shape[0])
    flags_np = (np.ones((n, steps), dtype=bool) if flags is None
                else np.asarray(ops.convert_to_numpy(jnp.swapaxes(flags, 0, 1))).astype(bool))
    return LayerRun(runs, flags_np, visible)
