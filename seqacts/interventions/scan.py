"""``ablation_scan``: the effect on a score of ablating each unit, several units per forward.

The batch is repeated once per unit of a chunk and each copy gets its own unit ablated (one
plan per layer and direction whose unit mask differs per block of samples), so a chunk of
units costs one forward of a larger batch instead of one forward each. The model may take
several inputs; which of them hold the samples, and are repeated, is the rule of
:mod:`seqacts.interventions.scan_inputs`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..capture.discovery import select_layers
from ..capture.specs import LayerSpec
from ..errors import EditError
from ..keras import is_keras_model
from ..kinds import has_cell_state
from ..schema import DIRECTIONS
from .context import Intervention
from .edits import STATES, Plan
from .reference_values import draw_rows, reference_values
from .scan_inputs import Key, ScanInputs, scan_inputs

__all__ = ["ablation_scan", "blocks", "default_batch_units"]

#: Memory a chunk's repeated batch may take on the CPU by default (bytes).
CPU_BUDGET = 1 << 30


def _scores(value: Any, n: int) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.shape != (n,):
        raise EditError(
            f"score: expected one float per sample ({n}), got {arr.size} values; return e.g. "
            "((y - x) ** 2).mean(dim=(1, 2)) for a batch-first output. If the model takes its "
            "batch along another dim than the one that gave n, say which with batch_dims= "
            "(e.g. batch_dims={0: 1} for a sequence-first input)"
        )
    return arr


def blocks(value: Any, n_blocks: int, n: int, batch_dim: int) -> list[Any]:
    """Split a model output over a repeated batch into one output per copy of the batch.

    Every tensor is cut along its dim of size ``n_blocks * n`` (``batch_dim`` when that one
    fits), inside tuples, lists and dicts; anything else is passed to every block as is.
    """
    if isinstance(value, Tensor):
        size = n_blocks * n
        dims = [d for d in range(value.dim()) if value.shape[d] == size]
        if not dims:
            raise EditError(
                f"ablation_scan: an output of shape {tuple(value.shape)} has no dim of size "
                f"{size} (the repeated batch); score needs per-sample outputs"
            )
        dim = batch_dim if batch_dim in dims else dims[0]
        return [value.narrow(dim, j * n, n) for j in range(n_blocks)]
    if isinstance(value, (tuple, list)):
        parts = [blocks(v, n_blocks, n, batch_dim) for v in value]
        if hasattr(value, "_fields"):  # a namedtuple takes its fields as arguments
            return [type(value)(*(p[j] for p in parts)) for j in range(n_blocks)]
        return [type(value)(p[j] for p in parts) for j in range(n_blocks)]
    if isinstance(value, dict):
        split = {k: blocks(v, n_blocks, n, batch_dim) for k, v in value.items()}
        return [{k: v[j] for k, v in split.items()} for j in range(n_blocks)]
    return [value] * n_blocks


def default_batch_units(inputs: ScanInputs, specs: list[LayerSpec], total: int) -> int:
    """Units per forward so that the repeated batch's activations fit the memory budget."""
    x = inputs.first
    steps = x.shape[1 - inputs.dim] if x.dim() >= 3 else 1
    per_sample = sum(s.n_directions * (s.n_units + 6 * s.n_cell_units) for s in specs)
    per_unit = max(1, (inputs.n * steps * per_sample * x.element_size() + inputs.nbytes) * 2)
    if x.is_cuda:
        budget = int(torch.cuda.mem_get_info(x.device)[0] * 0.5)
    else:
        budget = CPU_BUDGET
    return int(max(1, min(total, budget // per_unit)))


def _scanned_layers(model: nn.Module, layers: str | Iterable[str] | None,
                    state: str) -> list[LayerSpec]:
    """The selected layers; for ``state="c"`` the LSTM ones (all of them must be, when named)."""
    specs = [s for _, ss in select_layers(model, layers) for s in ss]
    if state != "c":
        return specs
    lstm = [s for s in specs if has_cell_state(s.kind)]
    if layers is not None and len(lstm) < len(specs):
        others = ", ".join(s.label for s in specs if s not in lstm)
        raise EditError(f"state='c': {others} has no cell state; select LSTM layers only")
    if not lstm:
        raise EditError("state='c': the model has no LSTM layer; use state='h'")
    return lstm


def _plans(part: list[tuple[str, int, int]], n: int, width_of: dict[str, int], state: str,
           fills: dict[tuple[str, int], Tensor]) -> dict[str, list[Plan]]:
    """Plans ablating unit ``part[j]`` (label, direction, unit) in the ``j``-th copy of a batch
    of ``n`` samples repeated ``len(part)`` times, to ``fills[label, direction]``: ``(1, W)``,
    per step ``(1, T, W)``, or per sample and step ``(n, T, W)``."""
    masks: dict[tuple[str, int], Tensor] = {}
    for j, (label, d, u) in enumerate(part):
        mask = masks.setdefault(
            (label, d), torch.zeros(len(part) * n, width_of[label], dtype=torch.bool)
        )
        mask[j * n : (j + 1) * n, u] = True
    plans: dict[str, list[Plan]] = {}
    for (label, d), mask in masks.items():
        values = fills[label, d]
        if values.shape[0] > 1:  # one row per sample: the same rows in every copy
            values = values.repeat(len(part), *([1] * (values.dim() - 1)))
        plans.setdefault(label, []).append(
            Plan(label=label, direction=d, state=state, unit_mask=mask,
                 values=values, per_step=values.dim() == 3)  # fmt: skip
        )
    return plans


def ablation_scan(
    model: nn.Module,
    x: Any,
    score: Callable[[Any], Any],
    *,
    layers: str | Iterable[str] | None = None,
    state: str = "h",
    value: float | str = 0.0,
    batch_units: int | None = None,
    units: Mapping[str, Iterable[int]] | None = None,
    batch_dims: Mapping[Key, int | None] | None = None,
    reference: xr.Dataset | None = None,
    per_step: bool = False,
    seed: int = 0,
) -> xr.Dataset:
    """The change of ``score(model(x))`` caused by ablating each unit at all steps.

    ``x`` may hold several arguments (``model(*x)`` for a tuple, ``model(**x)`` for a dict);
    every tensor holding the samples is repeated, everything else is passed as is.

    Forwards run under ``torch.no_grad()`` in the model's current mode (``model.eval()`` for
    deterministic scores: dropout would differ between the copies of the batch).

    Parameters
    ----------
    model : torch.nn.Module
        The root model, called as ``model(x)``, ``model(*x)`` or ``model(**x)``.
    x : torch.Tensor, tuple, list or dict
        The input batch: a tensor, a tuple or list of positional arguments
        (``(x, lengths)``, ``(x, (h0, c0))``) or a dict of keyword arguments (a DataLoader
        batch); an argument may itself be a tuple, list or dict (one level deep). The first
        tensor sets the number of samples: its size along dim 0 (dim 1 when ``model`` is
        itself an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` with ``batch_first=False``). Every
        other tensor with exactly one dim of that size is repeated along it (an ``h0`` of shape
        ``(layers, n, hidden)`` along dim 1); tensors without one, and non-tensors (ints,
        strings, None), are passed unchanged.
    score : callable
        ``score(outputs)`` -> one float per sample (tensor or array), e.g. reconstruction error.
        It is always called with the outputs for the samples of ``x``, in order (each copy of
        the repeated batch is cut out of the model's outputs), so it may compare them with
        ``x`` itself.
    layers : str or list of str, optional
        Labels, module paths or patterns as in :func:`seqacts.record`; default every layer
        (every LSTM layer for ``state="c"``).
    state : {"h", "c"}, default "h"
        The state ablated (see :func:`seqacts.ablate`).
    value : float, "mean" or "resample", default 0.0
        The value written: a float, or values from ``reference`` as in :func:`seqacts.ablate`
        (``"resample"`` draws one reference sample per sample of ``x``, the same in every
        ablated copy).
    batch_units : int, optional
        Units ablated per forward (the batch is repeated that many times); default chosen so
        that the repeated batch fits in memory.
    units : mapping of str to list of int, optional
        Only these units, by layer label (``{"encoder.l0": [3, 7]}``), in every direction;
        default every unit of ``layers``. With ``layers`` unset, the layers are its keys.
    batch_dims : mapping of int or str to int or None, optional
        The dim holding the samples of an argument, by position (tuple, list, or ``0`` for a
        tensor ``x``) or name (dict), for all tensors in it; None passes it unchanged. Needed
        when a tensor has several dims of the batch's size; overrides the rule above.
    reference, per_step, seed
        For ``value="mean"`` / ``"resample"``, as in :func:`seqacts.ablate`.

    Returns
    -------
    xarray.Dataset
        ``effect`` (sample, layer, direction, unit): score with the unit ablated minus the
        unedited score; ``mean_effect`` (layer, direction, unit), its mean over samples. NaN
        past a layer's width, on the backward direction of a unidirectional layer and for
        units not in ``units``.

    Raises
    ------
    EditError
        ``x`` of another type or holding no tensor, a tensor with several dims of the batch's
        size (name its dim in ``batch_dims``), a ``PackedSequence`` (pack inside the model),
        a bad ``state``, ``batch_units`` or ``units``, or a score that is not one float per
        sample.
    """
    if is_keras_model(model):
        from ..keras.api import interventions_unsupported

        raise interventions_unsupported(model)
    if state not in STATES:
        raise EditError(f"state: expected 'h' or 'c', got {state!r}")
    inputs = scan_inputs(model, x, batch_dims)
    if units is not None and layers is None:
        layers = list(units)
    specs = _scanned_layers(model, layers, state)
    width_of = {s.label: s.n_cell_units if state == "c" else s.n_units for s in specs}
    chosen = _chosen_units(units, width_of)
    todo = [(i, s, d, u) for i, s in enumerate(specs) for d in range(s.n_directions)
            for u in chosen[s.label]]  # fmt: skip
    n = inputs.n
    with torch.no_grad():
        base = _scores(score(inputs(model)), n)
    if batch_units is not None and batch_units < 1:
        raise EditError(f"batch_units: expected a positive number of units, got {batch_units}")
    chunk = batch_units or default_batch_units(inputs, specs, len(todo))
    n_dir = max(s.n_directions for s in specs)
    width = max(max(s.n_units, s.n_cell_units) for s in specs)
    effect = np.full((n, len(specs), n_dir, width), np.nan)
    fills = {(s.label, d): _fill(value, reference, s.label, d, state, width_of[s.label], n,
                                 per_step, seed)
             for s in specs for d in range(s.n_directions)}  # fmt: skip
    with tqdm(total=len(todo), desc="ablation scan", unit="unit") as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            plans = _plans([(s.label, d, u) for _, s, d, u in part], n, width_of, state, fills)
            repeated = inputs.repeated(len(part))
            with torch.no_grad(), Intervention(model, plans):
                outputs = blocks(repeated(model), len(part), n, inputs.dim)
                for j, (i, _, d, u) in enumerate(part):
                    effect[:, i, d, u] = _scores(score(outputs[j]), n) - base
            bar.update(len(part))
    return _dataset(effect, specs, state)


def _fill(value: float | str, reference: xr.Dataset | None, label: str, d: int, state: str,
          width: int, n: int, per_step: bool, seed: int) -> Tensor:
    """What ablating a unit of ``label``'s direction ``d`` writes, over all its units."""
    if not isinstance(value, str):
        return torch.full((1, width), float(value), dtype=torch.float64)
    values = reference_values(reference, label, DIRECTIONS[d], state, value, per_step)
    values = values[..., :width]
    return draw_rows(values, n, seed) if value == "resample" else values


def _chosen_units(
    units: Mapping[str, Iterable[int]] | None, width_of: dict[str, int]
) -> dict[str, list[int]]:
    """The units to ablate per layer label, checked against the layers' widths."""
    if units is None:
        return {label: list(range(width)) for label, width in width_of.items()}
    unknown = sorted(set(units) - set(width_of))
    if unknown:
        raise EditError(
            f"units: {', '.join(map(repr, unknown))} is not among the scanned layers "
            f"({', '.join(width_of)}); key units by layer label"
        )
    chosen = {label: sorted({int(u) for u in units.get(label, [])}) for label in width_of}
    for label, picked in chosen.items():
        bad = [u for u in picked if not 0 <= u < width_of[label]]
        if bad:
            raise EditError(
                f"units: {label} has units 0..{width_of[label] - 1}, got {bad}; pick units "
                "within the layer's width"
            )
    return chosen


def _dataset(effect: np.ndarray, specs: list[LayerSpec], state: str) -> xr.Dataset:
    dims = ("sample", "layer", "direction", "unit")
    coords = {
        "sample": np.arange(effect.shape[0]),
        "layer": [s.label for s in specs],
        "direction": list(DIRECTIONS[: effect.shape[2]]),
        "unit": np.arange(effect.shape[3]),
        "module": ("layer", [s.module_path for s in specs]),
        "kind": ("layer", [s.kind for s in specs]),
        "n_units": ("layer", np.array([s.n_units for s in specs], dtype=np.int64)),
        "n_cell_units": ("layer", np.array([s.n_cell_units for s in specs], dtype=np.int64)),
        "n_directions": ("layer", np.array([s.n_directions for s in specs], dtype=np.int64)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: units past a layer's width
        mean = np.nanmean(effect, axis=0)
    attrs = {"description": f"score with the unit's {state!r} ablated at all steps minus the unedited score"}
    return xr.Dataset(
        {
            "effect": (dims, effect, {"long_name": "effect of ablating the unit", **attrs}),
            "mean_effect": (dims[1:], mean, {"long_name": "mean effect over samples", **attrs}),
        },
        coords=coords,
        attrs={"state": state},
    )
