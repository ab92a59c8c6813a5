"""The seam through which a recording applies edits, without capture importing interventions.

:mod:`seqacts.interventions` registers its edit type and the context manager that applies
such edits (:func:`register`) when it is imported, which it is before any edit exists: edits
are built by :func:`seqacts.ablate` and :func:`seqacts.patch`. A :class:`~seqacts.Recorder`
given ``edits=`` then enters :func:`applying`'s block around its own, so ``record``,
``extract``, ``extract_to_netcdf`` and ``extract_distributed`` all record the edited run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..errors import EditError

__all__ = ["Applier", "applying", "digest", "register"]

#: Builds the block that applies ``edits`` to ``model`` (checking them against its layers).
Apply = Callable[[nn.Module, list[Any]], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Applier:
    """A registered edit type and how to apply a list of its edits to a model."""

    kind: type
    apply: Apply


_APPLIERS: list[Applier] = []


def register(kind: type, apply: Apply) -> None:
    """Apply edits of type ``kind`` with ``apply(model, edits)`` (registering twice is a no-op)."""
    if not any(a.kind is kind for a in _APPLIERS):
        _APPLIERS.append(Applier(kind, apply))


def applying(model: nn.Module, edits: Sequence[Any]) -> AbstractContextManager[Any]:
    """The block applying ``edits`` to ``model`` (no block for no edits).

    The edits are checked against the model here, before any forward runs.

    Raises
    ------
    EditError
        An item is not an edit of a registered type (``seqacts.ablate(...)``, ...).
    """
    if not edits:
        return nullcontext()
    applier = next((a for a in _APPLIERS if isinstance(edits[0], a.kind)), None)
    bad = [e for e in edits if applier is None or not isinstance(e, applier.kind)]
    if applier is None or bad:
        raise EditError(
            "edits: expected seqacts.ablate(...) or seqacts.patch(...) objects, got "
            f"{type(bad[0]).__name__}"
        )
    return applier.apply(model, list(edits))


def digest(edits: Sequence[Any]) -> str | None:
    """A sha1 of what ``edits`` write where (None for no edits): equal for equal edits."""
    if not edits:
        return None
    h = hashlib.sha1()
    for edit in edits:
        _feed(h, edit)
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if is_dataclass(value) and not isinstance(value, type):
        h.update(type(value).__qualname__.encode())
        for f in fields(value):
            h.update(f.name.encode())
            _feed(h, getattr(value, f.name))
    elif isinstance(value, xr.Dataset):
        for name in sorted(value.variables, key=str):
            h.update(str(name).encode())
            _feed(h, value.variables[name].values)
    elif isinstance(value, (xr.DataArray, xr.Variable)):
        _feed(h, value.values)
    elif isinstance(value, torch.Tensor):
        h.update(str(value.dtype).encode())
        _feed(h, value.detach().cpu().to(torch.float64).numpy())
    elif isinstance(value, np.ndarray):
        h.update(f"{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (tuple, list)):
        h.update(f"{type(value).__name__}{len(value)}".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(repr(value).encode())
