"""``input_attribution``: which input steps and features made a score, through captum.

The attribution methods are captum's (``IntegratedGradients``, ``Saliency``,
``InputXGradient``); this module only presents the model and its inputs to them the way
:func:`~seqacts.ablation_scan` does (``x`` a tensor, tuple or dict, ``batch_dims=``; see
:mod:`seqacts.interventions.scan_inputs`) and labels the result. captum expands the batch
along dim 0 of the attributed tensor, so that tensor is handed to it sample-major and put back
into the model's own layout, with every other sample-holding argument repeated to match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from ..errors import EditError, MissingDependencyError, OptionError
from .scan import blocks
from .scan_inputs import Key, scan_inputs

__all__ = ["METHODS", "input_attribution"]

#: ``method=`` -> the captum class computing it, and what it is.
METHODS: dict[str, tuple[str, str]] = {
    "integrated_gradients": (
        "IntegratedGradients",
        "(x - x') * mean over alpha of d score / d x at x' + alpha (x - x') (Riemann-Gauss-"
        "Legendre sum over `steps` points)",
    ),
    "saliency": ("Saliency", "|d score / d x|"),
    "gradient_x_input": ("InputXGradient", "x * d score / d x"),
}


def _captum(method: str) -> Any:
    if method not in METHODS:
        raise OptionError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    try:
        import captum.attr as attr
    except ImportError as error:
        raise MissingDependencyError(
            "input_attribution needs captum; install it with pip install 'seqacts[explain]' "
            "(captum==0.9.0)"
        ) from error
    return getattr(attr, METHODS[method][0])


def _scores(value: Any, n: int) -> Tensor:
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise EditError(
            f"score: input_attribution needs a float tensor computed from the outputs with "
            f"torch, got {type(value).__name__}; e.g. lambda y: (y ** 2).mean(dim=(1, 2))"
        )
    flat = value.reshape(-1)
    if flat.shape[0] != n:
        raise EditError(
            f"score: expected one value per sample ({n}), got shape {tuple(value.shape)}; "
            "reduce over every dim but the batch"
        )
    return flat


def input_attribution(
    model: nn.Module,
    x: Any,
    score: Callable[[Any], Any],
    *,
    method: str = "integrated_gradients",
    baseline: float | Tensor | None = None,
    steps: int = 32,
    batch_dims: Mapping[Key, int | None] | None = None,
) -> xr.DataArray:
    """How much each input step and feature contributes to ``score(model(x))``, per sample.

    Parameters
    ----------
    model : torch.nn.Module
        Run as it is (training mode untouched); parameters' ``.grad`` are left as they were
        (captum takes gradients with ``torch.autograd.grad``).
    x : tensor, tuple, list or dict
        ``model(x)``, ``model(*x)`` or ``model(**x)``, as in :func:`seqacts.ablation_scan`. The
        attributed tensor is the first one holding samples, a 3-d ``(sample, time, feature)``
        or, sequence-first, ``(time, sample, feature)`` tensor; other sample-holding tensors
        (lengths, initial states) are repeated with it.
    score : callable
        ``score(outputs)`` -> one value per sample, a tensor computed with torch. As in
        :func:`seqacts.ablation_scan`, it is always called with the outputs for the samples of
        ``x`` in order (integrated gradients' scaled copies are cut apart), so it may compare
        them with ``x`` itself.
    method : {"integrated_gradients", "saliency", "gradient_x_input"}
        captum's ``IntegratedGradients``, ``Saliency`` (absolute gradient) or ``InputXGradient``.
    baseline : float or tensor, optional
        Integrated gradients' reference input ``x'``: zeros by default, a float, or a tensor
        shaped like the attributed tensor (or broadcasting to it).
    steps : int, default 32
        Integrated gradients' number of points along the path from ``x'`` to ``x``.
    batch_dims : mapping, optional
        Which dim of each argument holds samples, as in :func:`seqacts.ablation_scan`.

    Returns
    -------
    xarray.DataArray
        ``attribution`` (sample, time, feature), in the input's units times the score's per
        input unit. Coordinate ``convergence_delta`` (sample): captum's completeness check
        for integrated gradients, ``sum(attribution) - (score(x) - score(x'))`` per sample
        (NaN for the other methods).

    Raises
    ------
    OptionError
        An unknown ``method``, ``steps < 1`` or an attributed tensor that is not 3-d.
    EditError
        ``x`` or ``score`` not of the forms above (see :func:`seqacts.ablation_scan`).
    MissingDependencyError
        captum is not installed.
    """
    algorithm = _captum(method)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise OptionError(f"steps: expected an int >= 1, got {steps!r}")
    inputs = scan_inputs(model, x, batch_dims)
    first, n, dim = inputs.first, inputs.n, inputs.dim
    if first.dim() != 3 or dim not in (0, 1) or not first.is_floating_point():
        raise OptionError(
            f"input_attribution: the attributed input must be a float (sample, time, feature) "
            f"or (time, sample, feature) tensor, got {first.dtype} of shape {tuple(first.shape)}"
            " with samples along dim " f"{dim}"
        )
    sample_major = first.detach().movedim(dim, 0).clone()
    sample_major.requires_grad_(method != "integrated_gradients")  # captum asks for it

    def forward(inp: Tensor) -> Tensor:  # score sees one copy of the batch at a time
        copies = inp.shape[0] // n
        batch = inputs.repeated(copies) if copies > 1 else inputs
        outputs = batch.with_first(inp.movedim(0, dim))(model)
        parts = blocks(outputs, copies, n, dim) if copies > 1 else [outputs]
        return torch.cat([_scores(score(part), n) for part in parts])

    explainer = algorithm(forward)
    with torch.enable_grad():
        if method == "integrated_gradients":
            base = _baseline(baseline, first, dim)
            attr, delta = explainer.attribute(sample_major, baselines=base, n_steps=steps,
                                              return_convergence_delta=True)  # fmt: skip
            deltas = delta.detach().to("cpu", torch.float64).numpy().reshape(n)
        else:
            attr = explainer.attribute(sample_major)
            deltas = np.full(n, np.nan)
    values = attr.detach().to("cpu").numpy()
    return xr.DataArray(
        values,
        dims=("sample", "time", "feature"),
        coords={"sample": np.arange(n), "time": np.arange(values.shape[1]),
                "feature": np.arange(values.shape[2]), "convergence_delta": ("sample", deltas)},
        name="attribution",
        attrs={"method": method, "steps": steps if method == "integrated_gradients" else 0,
               "description": METHODS[method][1]},
    )  # fmt: skip


def _baseline(baseline: float | Tensor | None, first: Tensor, dim: int) -> Any:
    if baseline is None or isinstance(baseline, (int, float)):
        return None if baseline is None else float(baseline)
    if not isinstance(baseline, Tensor):
        raise OptionError(
            f"baseline: expected None, a float or a tensor, got {type(baseline).__name__}"
        )
    try:
        full = torch.broadcast_to(baseline.to(first.dtype), first.shape)
    except RuntimeError as error:
        raise OptionError(
            f"baseline: shape {tuple(baseline.shape)} does not broadcast to the input's "
            f"{tuple(first.shape)}"
        ) from error
    return full.movedim(dim, 0).detach().clone()
