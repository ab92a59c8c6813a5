"""Dataset assembly: per-layer records (tensors) into padded numpy blocks, blocks into a Dataset.

A *block* holds one group (a forward call of the root model, or the calls made outside any):
arrays shaped like the final variables, already padded with NaN, its rows laid out by
:mod:`seqacts.capture.chains`. Blocks concatenate along ``sample``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from ..errors import OptionError
from ..kinds import has_cell_state, variable_doc
from ..schema import CELL_STATE_VARS, DIRECTIONS, MODEL_CALL, STATE_VARS, VARIABLE_DOCS
from .call_labels import label_coords
from .chains import Layout, Placement
from .diagnose import nonfinite_steps
from .module_rows import Piece
from .output_vars import output_variables
from .placing import adopt, end, place_states, place_steps
from .provenance import dataset_attrs
from .specs import LayerSpec

__all__ = ["Block", "build_block", "build_dataset"]

@dataclass
class Block:
    """One root forward call's arrays, padded; sample-major."""

    n_samples: int
    n_steps: int
    arrays: dict[str, np.ndarray]  # name -> (sample, layer, direction[, time], unit)
    lengths: np.ndarray  # (sample, layer) int64
    # name -> per <name>.call, the pieces (first row, array) it holds; None: not placed
    outputs: dict[str, list[list[tuple[int | None, np.ndarray]]]] = field(default_factory=dict)
    call: np.ndarray | None = None  # (sample, layer) int64: first call of the row's chain, -1
    call_row: np.ndarray | None = None  # (sample, layer) int64: row within that call, -1
    n_calls: np.ndarray | None = None  # (layer,) calls of each layer in this block
    note: str | None = None  # the layers whose rows could not be aligned, with their row counts
    plain: bool = True  # one chain per layer, aligned (no provenance coordinates needed)
    model_call: int = 0  # the group's number in the recording
    labels: dict[str, Any] = field(default_factory=dict)  # the labels it was recorded under


def _geometry(specs: Sequence[LayerSpec]) -> tuple[int, int, bool]:
    n_dir = max((s.n_directions for s in specs), default=1)
    width = max((max(s.n_units, s.n_cell_units) for s in specs), default=0)
    any_lstm = any(has_cell_state(s.kind) for s in specs)
    return n_dir, width, any_lstm


def _float_dtype(tensors: list[Tensor]) -> np.dtype:
    if any(t.dtype == torch.float64 for t in tensors):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def build_block(
    specs: Sequence[LayerSpec],
    layout: Layout,
    outputs: dict[str, list[list[Piece]]],
    internals: tuple[str, ...],
) -> Block:
    """Pad one group's records into arrays shaped like the dataset's variables.

    ``layout`` (:func:`seqacts.capture.chains.lay_out`) says which rows and steps each record fills:
    the calls of a chain follow each other along time, chains take their own rows. ``outputs``
    (:func:`seqacts.capture.module_rows.place_outputs`) holds the other modules' outputs per
    ``<name>.call``, each piece at its first row (a time-major output of a one-chain group
    is transposed here).
    """
    n_dir, width, any_lstm = _geometry(specs)
    placed = layout.placements
    records = [p.record for places in placed.values() for p in places]
    n_samples = max(layout.n_samples, _outputs_samples(outputs))
    n_steps = max([end(p) for places in placed.values() for p in places] + [0])
    dtype = _float_dtype([r.h for r in records])
    n_layers = len(specs)

    def empty(*shape: int) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    arrays: dict[str, np.ndarray] = {}
    adopted: set[str] = set()
    for name in ("h", *internals):
        shape = (n_samples, n_layers, n_dir, n_steps, width)
        found = adopt(specs, placed, name, shape, dtype)
        if found is not None:
            adopted.add(name)
        arrays[name] = found if found is not None else empty(*shape)
    for name in STATE_VARS + (CELL_STATE_VARS if any_lstm else ()):
        arrays[name] = empty(n_samples, n_layers, n_dir, width)
    arrays = {name: arrays[name] for name in _order(internals, any_lstm)}
    lengths = np.zeros((n_samples, n_layers), dtype=np.int64)

    for li, spec in enumerate(specs):
        _fill_layer(li, placed.get(spec.label, []), arrays, adopted, lengths)
    call, call_row = np.full((n_samples, n_layers), -1), np.full((n_samples, n_layers), -1)
    call[: layout.n_samples], call_row[: layout.n_samples] = layout.call, layout.call_row
    return Block(
        n_samples=n_samples,
        n_steps=n_steps,
        arrays=arrays,
        lengths=lengths,
        outputs={k: [[(row, _output_array(t, n_samples if layout.plain else None))
                      for row, t in slot] for slot in v] for k, v in outputs.items()},
        call=call,
        call_row=call_row,
        n_calls=layout.n_calls,
        note=layout.note,
        plain=layout.plain,
    )


def _fill_layer(li: int, places: list[Placement], arrays: dict[str, np.ndarray],
                adopted: set[str], lengths: np.ndarray) -> None:
    """Copy layer ``li``'s records into its slot of every array (but those adopted whole) and
    its rows' valid lengths into ``lengths``."""
    for name, arr in arrays.items():
        if name in adopted:
            continue
        slot = arr[:, li]
        if arr.ndim == 5:
            place_steps(slot, [(p, v) for p in places
                                if (v := p.record.h if name == "h" else p.record.extra.get(name))
                                is not None])
        else:
            place_states(slot, [(p, _state(p, name)) for p in places])
    for p in places:
        lens = p.record.lengths.numpy()
        rows = slice(p.row, p.row + len(lens))
        lengths[rows, li] = np.maximum(lengths[rows, li], np.where(lens > 0, p.offset + lens, 0))


def _state(place: Placement, name: str) -> Tensor | None:
    """``h_0``/``c_0`` from the first call of a chain, ``h_n``/``c_n`` from every call (last wins)."""
    rec = place.record
    if name in ("h_0", "c_0"):
        if not place.first:
            return None
        return rec.h0 if name == "h_0" else rec.c0
    return rec.hn if name == "h_n" else rec.cn


def _order(internals: tuple[str, ...], any_lstm: bool) -> tuple[str, ...]:
    """The dataset's variable order: h, states, internals."""
    return ("h", *STATE_VARS, *(CELL_STATE_VARS if any_lstm else ()), *internals)


def _outputs_samples(outputs: dict[str, list[list[Piece]]]) -> int:
    return max([row + (t.shape[0] if t.dim() else 1) for slots in outputs.values()
                for slot in slots for row, t in slot if row is not None] + [0])


def _output_array(t: Tensor, n_samples: int | None) -> np.ndarray:
    """``t`` as a float numpy array; transposed when it is time-major in a block of
    ``n_samples`` rows (None: it is already sample-major)."""
    t = t.detach().to("cpu")
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    if t.dim() == 0:
        t = t.reshape(1)
    if n_samples is not None and t.dim() > 1 and t.shape[0] != n_samples and (
            t.shape[1] == n_samples):
        t = t.transpose(0, 1)  # a time-major output: put the sample axis first
    arr = t.numpy()
    return arr if arr.dtype.kind == "f" else arr.astype(np.float64)


def _concat(blocks: Sequence[Block], name: str, n_steps: int) -> np.ndarray:
    first = blocks[0].arrays[name]
    if len(blocks) == 1 and (first.ndim == 4 or first.shape[3] == n_steps):
        return first
    total = sum(b.n_samples for b in blocks)
    dtype = np.result_type(*[b.arrays[name].dtype for b in blocks])
    # a Python cell's width is known from its first call, which may come in a later block
    width = max(b.arrays[name].shape[-1] for b in blocks)
    shape = (total, *first.shape[1:-1], width)
    if first.ndim == 5:
        shape = (total, first.shape[1], first.shape[2], n_steps, width)
    out = np.full(shape, np.nan, dtype=dtype)
    start = 0
    for b in blocks:
        arr = b.arrays[name]
        if arr.ndim == 5:
            out[start : start + b.n_samples, :, :, : arr.shape[3], : arr.shape[4]] = arr
        else:
            out[start : start + b.n_samples, ..., : arr.shape[-1]] = arr
        start += b.n_samples
    return out




def _int(arr: np.ndarray | None, block: Block) -> np.ndarray:
    if arr is None:
        return np.full(block.lengths.shape, -1, dtype=np.int64)
    return arr.astype(np.int64, copy=False)


def _calls(blocks: Sequence[Block]) -> np.ndarray:
    """Each block's call numbers, counted on from the calls of the blocks before it."""
    parts, seen = [], np.zeros(blocks[0].lengths.shape[1], dtype=np.int64)
    for b in blocks:
        call = _int(b.call, b)
        parts.append(np.where(call >= 0, call + seen, -1))
        if b.n_calls is not None:
            seen = seen + b.n_calls
    return np.concatenate(parts)


def build_dataset(
    specs: Sequence[LayerSpec],
    blocks: Sequence[Block],
    internals: tuple[str, ...],
    model: Any,
    time: Sequence[Any] | None,
) -> xr.Dataset:
    """Concatenate blocks along ``sample`` and label everything (see the README's schema).

    ``model`` is described in the attributes (an ``nn.Module``, or another front end's model).

    Without any layer (only ``modules=`` outputs recorded) the dataset has their variables and
    ``sample`` only.
    """
    outputs = [(b.n_samples, b.outputs) for b in blocks]
    if not specs:
        ds = xr.Dataset(coords={"sample": np.arange(sum(b.n_samples for b in blocks))},
                        attrs=dataset_attrs(model, internals))
        for name, var in output_variables(outputs, {"sample"}, model).items():
            ds[name] = var
        return ds
    n_dir, width, _ = _geometry(specs)
    n_steps = max(b.n_steps for b in blocks)
    data_vars: dict[str, Any] = {}
    for name in blocks[0].arrays:
        arr = _concat(blocks, name, n_steps)
        dims = ("sample", "layer", "direction", "time", "unit") if arr.ndim == 5 else (
            "sample", "layer", "direction", "unit")
        long_name, description = (variable_doc(name, [s.kind for s in specs])
                                  or VARIABLE_DOCS[name])
        data_vars[name] = xr.Variable(dims, arr, {"long_name": long_name, "description": description})
    lengths = np.concatenate([b.lengths for b in blocks], axis=0)
    total = lengths.shape[0]
    if time is None:
        time_coord: Any = np.arange(n_steps)
    else:
        time_coord = time
        if len(time) != n_steps:
            raise OptionError(
                f"time: got {len(time)} labels for {n_steps} recorded timesteps; pass exactly "
                "one label per timestep of the longest recorded sequence"
            )
    coords = {
        "sample": np.arange(total),
        "layer": [s.label for s in specs],
        "direction": list(DIRECTIONS[:n_dir]),
        "time": time_coord,
        "unit": np.arange(width),
        "module": ("layer", [s.module_path for s in specs]),
        "kind": ("layer", [s.kind for s in specs]),
        "n_units": ("layer", np.array([s.n_units for s in specs], dtype=np.int64)),
        "n_cell_units": ("layer", np.array([s.n_cell_units for s in specs], dtype=np.int64)),
        "n_directions": ("layer", np.array([s.n_directions for s in specs], dtype=np.int64)),
        "length": (("sample", "layer"), lengths),
        "nonfinite": (("sample", "layer"), nonfinite_steps(data_vars["h"].values, lengths, specs)),
    }
    coords[MODEL_CALL] = ("sample", np.repeat(np.array([b.model_call for b in blocks], np.int64),
                                             [b.n_samples for b in blocks]))
    for name, values in label_coords([b.labels for b in blocks],
                                     [b.n_samples for b in blocks]).items():
        coords[name] = ("sample", values)
    if not all(b.plain for b in blocks):  # rows are not simply each call's batch: say whose
        coords["call"] = (("sample", "layer"), _calls(blocks))
        coords["call_row"] = (("sample", "layer"), np.concatenate([_int(b.call_row, b)
                                                                    for b in blocks]))
    # as Variables: xarray then skips inferring each coordinate's dims (a third of its cost)
    variables = {k: xr.Variable(*v) if isinstance(v, tuple) else xr.Variable((k,), v)
                 for k, v in coords.items()}
    ds = xr.Dataset(data_vars, coords=variables, attrs=dataset_attrs(model, internals))
    reserved = {str(k) for k in (*ds.variables, *ds.dims)}
    for name, var in output_variables(outputs, reserved, model).items():
        ds[name] = var
    return ds
