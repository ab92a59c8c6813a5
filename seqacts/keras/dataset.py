"""What a Keras recording adds to the shared assembly: the mask, the re-run's deviation from
the layer's own output, Keras' equations in the variables' descriptions, and provenance."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..capture.specs import LayerSpec
from ..errors import OptionError
from .discovery import KerasLayer
from .kinds import KERAS_DOCS, KERAS_INTERNALS, description

__all__ = ["ModelFacts", "finish_dataset", "model_facts", "resolve_internals"]


def resolve_internals(internals: bool | str | Collection[str] | None,
                      kinds: set[str]) -> tuple[str, ...]:
    """Validate ``internals=`` against the Keras kinds recorded; return the variable names."""
    if internals is None or internals is False:
        return ()
    applicable = list(dict.fromkeys(n for k in sorted(kinds) for n in KERAS_INTERNALS[k]))
    if internals is True:
        return tuple(applicable)
    wanted = [internals] if isinstance(internals, str) else list(internals)
    every = {n for names in KERAS_INTERNALS.values() for n in names}
    unknown = [n for n in wanted if n not in every]
    if unknown:
        raise OptionError(f"internals: unknown variable {', '.join(map(repr, unknown))}; choose "
                          f"from {', '.join(sorted(every))} (or pass internals=True for all)")
    missing = [n for n in wanted if n not in applicable]
    if missing:
        raise OptionError(
            f"internals: {', '.join(map(repr, missing))} does not exist for the selected layers "
            f"(kinds {', '.join(sorted(kinds))}); available: {', '.join(applicable)}")
    return tuple(dict.fromkeys(wanted))


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
            if type(c).__name__ == "GRUCell"}


def finish_dataset(ds: xr.Dataset, entries: Sequence[KerasLayer], specs: Sequence[LayerSpec],
                   masks: Sequence[np.ndarray], deviation: np.ndarray,
                   facts: ModelFacts) -> xr.Dataset:
    """Add the ``mask`` variable, the ``keras_deviation`` coordinate and Keras' attributes."""
    import keras

    steps = ds.sizes["time"]
    mask = np.concatenate([np.pad(m, ((0, 0), (0, 0), (0, steps - m.shape[2]))) for m in masks])
    ds["mask"] = xr.Variable(("sample", "layer", "time"), mask, {
        "long_name": KERAS_DOCS["mask"],
        "description": "1 where the layer ran the step, 0 where Keras' mask skipped it: there "
                       "h (and c) hold the state carried from the last unmasked step, the gates "
                       "what the cell computed and Keras discarded",
    })
    ds = ds.assign_coords(keras_deviation=("layer", deviation.astype(np.float64)))
    ds["keras_deviation"].attrs.update(
        long_name="largest difference from the layer's own output",
        description="max |layer output - seqacts' re-run of the recurrence| over the recorded "
                    "calls; 0 where bitwise equal (README, 'Keras')")
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
