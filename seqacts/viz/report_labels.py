"""The groups a report compares: labels along sample, the baseline, the kinds and their colours.

A kind is a level of a categorical group (``anomaly``: spike, level_shift, ...) other than the
baseline; a boolean group (``is_anomaly``) is one kind, or is split into kinds by a text
coordinate (see :func:`resolve_kinds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..analysis.groups import group_labels, is_boolean, split_levels
from ..errors import GroupError
from .figure_style import group_colors

__all__ = ["Kinds", "resolve_kinds"]


@dataclass(frozen=True)
class Kinds:
    """Labels along sample, the baseline level, the kinds to report and every level's colour."""

    labels: xr.DataArray
    baseline: Any
    kinds: list[Any]
    colors: dict[Any, str]

    def name(self, kind: Any) -> str:
        return f"{self.labels.name}={kind}" if is_boolean(self.labels) else str(kind)

    def swatch(self, kind: Any) -> str:
        color = self.colors.get(kind, "#888")
        return f'<span class=swatch style="background:{color}"></span>'


def _detect_kinds(ds: xr.Dataset, flags: np.ndarray) -> str | None:
    """A text coordinate along sample with one value on every unflagged sample, others else."""
    for name, coord in ds.coords.items():
        if coord.dims != ("sample",) or name == "sample" or coord.dtype.kind not in "OUS":
            continue
        values = coord.values
        normal = set(values[~flags].tolist())
        if len(normal) == 1 and not normal & set(values[flags].tolist()):
            return str(name)
    return None


def resolve_kinds(
    ds: xr.Dataset, group: Any, kinds: str | None = None, baseline: Any = None
) -> Kinds:
    """The kinds of a group: its own levels, or those of ``kinds`` (a categorical coordinate).

    With a boolean group and no ``kinds``, a text coordinate along sample that takes one value
    on every False sample and other values on the True samples (e.g. ``anomaly``: normal /
    spike / ...) gives the kinds; else the group is one kind.
    """
    labels = group_labels(ds, group)
    if is_boolean(labels) and isinstance(baseline, str):  # e.g. --baseline False
        baseline = {"False": False, "True": True}.get(baseline, baseline)
    if is_boolean(labels):
        flags = labels.values.astype(bool)
        kinds = kinds if kinds is not None else _detect_kinds(ds, flags)
        if kinds is not None:
            split = group_labels(ds, kinds)
            normal = sorted(set(split.values[~flags].tolist()))
            if len(normal) != 1:
                raise GroupError(
                    f"kinds: {kinds!r} takes {len(normal)} values on the samples where "
                    f"{labels.name} is False ({normal}); expected one, the baseline"
                )
            labels, baseline = split, normal[0]
    elif kinds is not None:
        raise GroupError(f"kinds: {labels.name!r} is already categorical; drop kinds=")
    baseline, tests = split_levels(labels, baseline)
    return Kinds(labels, baseline, tests, group_colors(labels, baseline))
