"""Labels along ``sample``: resolve a group (name, DataArray or sequence) and its levels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import GroupError
from .core import MissingVariableError

__all__ = ["group_labels", "is_boolean", "split_levels"]


def group_labels(ds: xr.Dataset, group: str | xr.DataArray | Sequence[Any]) -> xr.DataArray:
    """Resolve ``group`` (a variable name, a DataArray or a sequence) into labels along sample.

    Returns
    -------
    xarray.DataArray
        Dim ``sample``, loaded into memory; named after the variable when one was given.
    """
    if isinstance(group, str):
        if group not in ds.variables:
            raise MissingVariableError(
                f"no variable or coordinate {group!r} along 'sample'; attach one first, e.g. "
                f"ds = ds.assign_coords({group}=('sample', labels))"
            )
        labels = ds[group]
    elif isinstance(group, xr.DataArray):
        labels = group
    else:
        values = np.asarray(group)
        if values.shape != (ds.sizes["sample"],):
            raise GroupError(
                f"group: expected one label per sample ({ds.sizes['sample']}), "
                f"got an array of shape {values.shape}"
            )
        labels = xr.DataArray(values, dims="sample", coords={"sample": ds["sample"]}, name="group")
    if labels.dims != ("sample",):
        raise GroupError(f"group: expected labels along 'sample' only, got dims {labels.dims}")
    return labels.compute()


def is_boolean(labels: xr.DataArray) -> bool:
    """Whether the labels are two-valued True/False (also 0/1)."""
    return set(pd.Series(labels.values).dropna().tolist()) <= {False, True}


def split_levels(labels: xr.DataArray, baseline: Any = None) -> tuple[Any, list[Any]]:
    """The baseline level and the other levels, sorted; checked for >= 2 samples each.

    The default baseline is ``False``/``0`` for boolean labels, else ``"normal"`` when that is a
    label, else the most frequent label (ties broken by sort order).
    """
    values = pd.Series(labels.values).dropna()
    counts = values.value_counts()
    levels = sorted(counts.index.tolist(), key=lambda v: (str(type(v)), v))
    if len(levels) < 2:
        raise GroupError(
            f"compare: group {labels.name!r} has a single value ({levels[0] if levels else '-'}) "
            "across the samples; need samples from two groups"
        )
    if baseline is None:
        if set(levels) <= {False, True}:
            baseline = levels[0]
        elif "normal" in levels:
            baseline = "normal"
        else:
            baseline = max(levels, key=lambda v: (counts[v], -levels.index(v)))
    elif baseline not in levels:
        raise GroupError(f"baseline: {baseline!r} is not a value of {labels.name!r}: {levels}")
    small = [lv for lv in levels if counts[lv] < 2]
    if small:
        raise GroupError(f"compare: each group needs >= 2 samples; {small} have fewer")
    return baseline, [lv for lv in levels if lv != baseline]
