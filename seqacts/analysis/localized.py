"""Per-sample features restricted to chosen steps: where in time a contrast is made.

A mask over ``(sample, time)`` (an anomaly mask, or the steps where ``step_distance`` is high)
picks the steps of each tested sample; baseline samples, whose mask may be empty, are read at
the same steps, weighted by how often the tested group is masked there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..errors import GroupError
from .core import masked, require

__all__ = ["deviation", "localized_features", "mask_name", "step_mask"]


def mask_name(where: Any) -> str:
    """A short label of a ``where=`` argument for attributes and captions."""
    if isinstance(where, str):
        return where
    if isinstance(where, xr.DataArray) and where.name is not None:
        return str(where.name)
    return "mask"


def step_mask(ds: xr.Dataset, where: str | xr.DataArray | np.ndarray) -> xr.DataArray:
    """Resolve ``where`` into a boolean DataArray with dims ``sample, time``.

    Accepts the name of a variable of ``ds``, a DataArray, or an array shaped (sample, time).
    """
    if isinstance(where, str):
        require(ds, where, "where")
        mask = ds[where]
    elif isinstance(where, xr.DataArray):
        mask = where
    else:
        arr = np.asarray(where)
        shape = (ds.sizes["sample"], ds.sizes["time"])
        if arr.shape != shape:
            raise GroupError(
                f"where: expected a boolean array shaped (sample, time) = {shape}, got "
                f"{arr.shape}; or pass a DataArray with dims ('sample', 'time')"
            )
        mask = xr.DataArray(arr, dims=("sample", "time"))
    if set(mask.dims) != {"sample", "time"} or mask.dtype != bool:
        raise GroupError(
            f"where: expected a boolean mask with dims (sample, time), got dims {mask.dims} and "
            f"dtype {mask.dtype}; e.g. where=ds.anomaly_mask or where=step_distance.max('layer') > 5"
        )
    return mask.transpose("sample", "time").reset_coords(drop=True)


def deviation(ds: xr.Dataset, var: str, baseline: np.ndarray) -> xr.DataArray:
    """How far each step's value is from normal: ``|v - m_t| / s_t`` per unit.

    ``m_t`` and ``s_t`` are the mean and standard deviation over the ``baseline`` samples
    (boolean along sample) of the unit's value at step ``t``; padding stays NaN.

    Returns
    -------
    xarray.DataArray
        ``var``'s dims (``sample, layer, direction, time, unit``), named ``{var}_deviation``.
    """
    require(ds, var, "deviation")
    v = masked(ds, var)
    ref = v.isel(sample=np.flatnonzero(baseline))
    spread = ref.std("sample")
    out = abs(v - ref.mean("sample")) / spread.where(spread > 0)
    out.name = f"{var}_deviation"
    out.attrs = {"long_name": f"|{var} - normal mean| / normal std"}
    return out


def localized_features(
    ds: xr.Dataset,
    where: Any,
    members: np.ndarray,
    var: str = "h",
    *,
    steps: xr.DataArray | None = None,
) -> tuple[xr.DataArray, xr.DataArray]:
    """Means of ``var`` over each sample's own masked steps, and over the members' steps.

    Parameters
    ----------
    where : str, xarray.DataArray or array
        Boolean mask over ``(sample, time)``, see :func:`step_mask`.
    members : numpy.ndarray
        Boolean along ``sample``: the tested group whose mask defines "the same steps".
    steps : xarray.DataArray, optional
        Per-step values to average instead of ``var`` (e.g. :func:`deviation`).

    Returns
    -------
    tuple of xarray.DataArray
        ``own``: the mean over the sample's masked valid steps (NaN when it has none);
        ``same_steps``: the mean over valid steps weighted by ``w_t``, the fraction of members
        masked at step ``t``. Both with dims ``sample, layer, direction, unit``.
    """
    mask = step_mask(ds, where)
    if steps is None:
        require(ds, var, "compare")
    v = masked(ds, var) if steps is None else steps
    own = v.where(mask).mean("time")
    weight = mask.isel(sample=np.flatnonzero(members)).mean("sample").astype(float)
    present = (v.notnull() * weight).sum("time")
    same = (v.fillna(0.0) * weight).sum("time") / present.where(present > 0)
    return own, same
