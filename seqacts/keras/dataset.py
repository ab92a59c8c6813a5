"""What a Keras recording adds to the shared assembly: the mask, the re-run's deviation from
the layer's own output, Keras' equations in the variables' descriptions, and provenance."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..capture.specs import LayerSpec
from ..kinds.keras_kinds import MASK_DOC, description, is_gru_cell
from .discovery import KerasLayer

__all__ = ["ModelFacts", "finish_dataset", "model_facts"]


class _Weight:
    def __init__(self, variable: Any) -> None:
        self.shape = tuple(int(d) for d in variable.shape)
        self.dtype = str(variable.dtype)


class ModelFacts:
    """A Keras model as provenance reads it: its class and its weights' paths, shapes, dtypes."""

    def __init__(self, model: Any) -> None:
        self.model = model
        cls = type(model)
        self.model_class = f"{cls.__module__}.{cls.__qualname__}"

    def named_parameters(self) -> Iterator[tuple[str, _Weight]]:
        for variable in self.model.weights:
            yield str(variable.path), _Weight(variable)

    def structure(self) -> str:
        return hashlib.sha1("\n".join(f"{n}:{w.shape}:{w.dtype}"
                                      for n, w in self.named_parameters()).encode()).hexdigest()


def model_facts(model: Any) -> ModelFacts:
    return ModelFacts(model)


def _gru_variants(entries: Sequence[KerasLayer]) -> set[bool]:
    return {bool(c.reset_after) for e in entries for c in e.cells
            if is_gru_cell(type(c).__name__)}


def _activation_name(cell: Any, name: str) -> str:
    """The name of a cell's activation (``""`` when the cell has none of that role)."""
    fn = getattr(cell, name, None)
    return "" if fn is None else str(getattr(fn, "__name__", type(fn).__name__))


def finish_dataset(ds: xr.Dataset, entries: Sequence[KerasLayer], specs: Sequence[LayerSpec],
                   masks: Sequence[np.ndarray], deviation: np.ndarray,
                   facts: ModelFacts) -> xr.Dataset:
    """Add the ``mask`` variable, the ``keras_deviation`` coordinate and Keras' attributes."""
    import keras

    steps = ds.sizes["time"]
    mask = np.concatenate([np.pad(m, ((0, 0), (0, 0), (0, steps - m.shape[2]))) for m in masks])
    ds["mask"] = xr.Variable(("sample", "layer", "time"), mask,
                             {"long_name": MASK_DOC[0], "description": MASK_DOC[1]})
    ds = ds.assign_coords(keras_deviation=("layer", deviation.astype(np.float64)))
    ds["keras_deviation"].attrs.update(
        long_name="largest difference from the layer's own output",
        description="max |layer output - seqacts' re-run of the recurrence| over the recorded "
                    "calls; 0 where bitwise equal (README, 'Keras')")
    cells = {s.label: e.cells[s.index] for e in entries for s in e.specs}
    for role in ("activation", "recurrent_activation"):
        ds = ds.assign_coords({role: ("layer", [_activation_name(cells[s.label], role)
                                                for s in specs])})
        ds[role].attrs["description"] = f"the Keras cell's {role} (README, 'Keras')"
    kinds = {s.kind for s in specs}
    variants = _gru_variants(entries)
    for name in ds.data_vars:
        found = [d for k in sorted(kinds) for v in sorted(variants or {True})
                 if (d := description(k, str(name), v)) is not None]
        if found:
            ds[name].attrs["description"] = "; or ".join(dict.fromkeys(found))
    ds.attrs.update(model_class=facts.model_class, model_structure=facts.structure(),
                    frontend="keras", keras_version=keras.version(),
                    keras_backend=keras.backend.backend())
    return ds
