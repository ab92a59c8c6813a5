"""The report's own ablation scan: the units it ranks, ablated in the user's model.

``report(ds, out, model=..., inputs=..., score=...)`` checks those arguments here before any
analysis runs; once the localized effect sizes have ranked the units of each kind, the report
calls the :class:`ModelScan` with those units and shows their effects on the score. The
report imports this module only when a model is given, as it needs torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from torch import Tensor, nn

from ..errors import ArgumentTypeError, InputError, OptionError
from ..interventions.scan import ablation_scan
from ..interventions.scan_inputs import scan_inputs

__all__ = ["ModelScan", "model_scan"]

#: How to name the dim of an argument whose samples are ambiguous: the report takes no
#: ``batch_dims``, the scan does.
OVERRIDE = (
    "run seqacts.ablation_scan(model, inputs, score, batch_dims={{{key!r}: dim}}) yourself and "
    "pass its result as report(..., ablation=)"
)


@dataclass(frozen=True)
class ModelScan:
    """A model, its inputs (one per sample of the dataset, in order) and a per-sample score.

    ``inputs`` is anything :func:`seqacts.ablation_scan` takes as ``x``: a tensor, a tuple of
    positional arguments or a dict of keyword arguments."""

    model: nn.Module
    inputs: Any
    score: Callable[[Any], Any]
    samples: np.ndarray

    def __call__(self, units: Mapping[str, Iterable[int]]) -> xr.Dataset:
        """:func:`seqacts.ablation_scan` of ``units`` (by layer label), on the dataset's samples."""
        scan = ablation_scan(self.model, self.inputs, self.score, units=units)
        return scan.assign_coords(sample=self.samples)


def model_scan(
    ds: xr.Dataset,
    model: Any,
    inputs: Any,
    score: Any,
    ablation: xr.Dataset | None = None,
) -> ModelScan:
    """Check ``report``'s ``model``, ``inputs`` and ``score`` against ``ds``; the scan to run.

    Raises
    ------
    OptionError
        ``model`` without ``inputs`` or ``score`` (or the other way round), or with a
        precomputed ``ablation`` as well.
    ArgumentTypeError
        ``model`` is no ``nn.Module``, ``inputs`` no tensor, tuple, list or dict, or ``score``
        not callable.
    EditError
        ``inputs`` holds no tensor, or a tensor whose samples are ambiguous (as in
        :func:`seqacts.ablation_scan`).
    InputError
        ``inputs`` holds another number of samples than ``ds``.
    """
    if model is None or inputs is None:
        given = "model=" if model is not None else "inputs=" if inputs is not None else "score="
        raise OptionError(
            f"report: {given} needs model= and inputs= together (the model's input batch, one "
            "sample per sample of the dataset) to run the ablation scan"
        )
    if ablation is not None:
        raise OptionError(
            "report: pass either ablation= (a precomputed scan) or model= and inputs= (the "
            "report runs the scan), not both"
        )
    if score is None:
        raise OptionError(
            "report: model= and inputs= need score=, a callable outputs -> one float per sample "
            "(e.g. lambda y: ((y - x) ** 2).mean(dim=(1, 2))); a score attached to the dataset "
            "cannot be recomputed from the ablated model's outputs"
        )
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, (Tensor, tuple, list, Mapping)):
        raise ArgumentTypeError(
            f"inputs: expected the model's input batch as a tensor, a tuple of positional "
            f"arguments or a dict of keyword arguments, got {type(inputs).__name__}"
            + ("; pass torch.from_numpy(x)" if hasattr(inputs, "__array__") else "")
        )
    if not callable(score):
        raise ArgumentTypeError(f"score: expected a callable, got {type(score).__name__}")
    batch = scan_inputs(model, inputs, name="inputs", override=OVERRIDE)
    n = ds.sizes["sample"]
    if batch.n != n:
        shape = tuple(batch.first.shape)
        raise InputError(
            f"inputs: {batch.n} samples along dim {batch.dim} of the first tensor (shape "
            f"{shape}), but the dataset has {n}; pass the inputs the dataset was recorded from, "
            "in its sample order"
        )
    return ModelScan(model, inputs, score, ds["sample"].values)
