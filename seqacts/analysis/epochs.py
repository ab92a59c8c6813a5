"""An analysis run on each epoch of a dataset with an ``epoch`` dim (a training recording)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import xarray as xr

from ..errors import MissingVariableError

__all__ = ["per_epoch"]

R = TypeVar("R", xr.Dataset, xr.DataArray)


def per_epoch(ds: xr.Dataset, analysis: Callable[..., R], *args: Any, dim: str = "epoch",
              **kwargs: Any) -> R:
    """``analysis(ds.sel(epoch=e), ...)`` for every epoch, concatenated along ``epoch``.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset with an ``epoch`` dim, e.g. the file :class:`seqacts.lightning.RecordStates`
        writes (opened with :func:`seqacts.open_dataset`).
    analysis : callable
        Any analysis taking one recording: :func:`seqacts.dead_units`,
        :func:`seqacts.saturation`, :func:`seqacts.summary` ...
    *args, **kwargs
        Passed on to ``analysis``.
    dim : str, default "epoch"
        The dim to run over.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        The analysis' result with ``epoch`` as its first dim.

    Raises
    ------
    MissingVariableError
        When ``ds`` has no ``dim``.
    """
    if dim not in ds.dims:
        raise MissingVariableError(
            f"per_epoch: the dataset has no {dim!r} dim (dims: {', '.join(map(str, ds.dims))}); "
            "pass a recording written by seqacts.lightning.RecordStates, or dim=")
    parts = [analysis(ds.isel({dim: i}, drop=True), *args, **kwargs) for i in range(ds.sizes[dim])]
    return xr.concat(parts, dim=ds[dim])
