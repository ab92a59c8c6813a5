"""One layer and direction of a per-step variable, read one block of samples at a time.

:class:`States` is what :mod:`seqacts.analysis.windows` and the viewer search and summarise: a
``(sample, time, unit)`` view of ``h`` (or ``c``, a gate, ``grad_h``) trimmed to the layer's
width, read in blocks of whole Dask chunks along ``sample`` with NaN past each sample's length
(samples with non-finite states left out), so a lazily opened recording is read in bounded
memory. :func:`thresholds` is each unit's exact percentile over the valid steps.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import numpy as np
import xarray as xr

from ..errors import LayerSelectionError, OptionError
from .core import CELL_WIDTH_VARS, require
from .percentile import column_percentile

__all__ = ["BLOCK_BYTES", "PERCENTILE", "States", "states", "thresholds"]

#: A block read at once holds about this many bytes when the data is not chunked by Dask.
BLOCK_BYTES = 64 * 2**20
#: The default threshold of :func:`match`: each unit's percentile over the valid steps.
PERCENTILE = 80.0


class States:
    """One layer and direction of a per-step variable, ``(sample, time, unit)``, read in blocks.

    ``lengths`` holds each sample's number of valid steps (0 for a sample left out).
    """

    def __init__(
        self, ds: xr.Dataset, layer: Hashable, var: str, direction: str, what: str
    ) -> None:
        require(ds, var, what)
        da = ds[var]
        missing = [d for d in ("sample", "layer", "time", "unit") if d not in da.dims]
        if missing:
            raise OptionError(
                f"{what}: {var!r} has dims {da.dims}, not a per-step, per-unit variable (it "
                f"lacks {', '.join(missing)}); use 'h', 'c', a gate or 'grad_h'"
            )
        names = [str(v) for v in ds["layer"].values]
        if str(layer) not in names:
            raise LayerSelectionError(f"{what}: no layer {layer!r}; available: {', '.join(names)}")
        index = names.index(str(layer))
        sub = ds.isel(layer=index)
        da = da.isel(layer=index)
        if "direction" in da.dims:
            dirs = [str(v) for v in da["direction"].values]
            if "n_directions" in sub.coords:
                dirs = dirs[: int(sub["n_directions"])]
            if direction not in dirs:
                raise OptionError(
                    f"{what}: layer {layer!r} has no direction {direction!r}; it has "
                    f"{', '.join(dirs)}"
                )
            da = da.isel(direction=dirs.index(direction))
        width_name = "n_cell_units" if var in CELL_WIDTH_VARS else "n_units"
        if width_name in sub.coords:
            da = da.isel(unit=slice(0, int(sub[width_name])))
        n_time = da.sizes["time"]
        if "length" in sub.coords:
            lengths = np.asarray(sub["length"].values, dtype=np.int64)
            lengths = np.broadcast_to(lengths, (da.sizes["sample"],)).copy()
        else:
            lengths = np.full(da.sizes["sample"], n_time, dtype=np.int64)
        if "nonfinite" in sub.coords:
            lengths[np.asarray(sub["nonfinite"].values) > 0] = 0
        steps = int(lengths.max(initial=0))
        self.data = da.isel(time=slice(0, max(steps, 1))).transpose("sample", "time", "unit")
        self.lengths = np.minimum(lengths, self.data.sizes["time"])
        self.layer, self.var, self.direction = str(layer), var, direction
        kind = self.data.dtype
        self.dtype = np.dtype(np.float64 if kind == np.float64 else np.float32)

    @property
    def units(self) -> int:
        return int(self.data.sizes["unit"])

    def blocks(self, unit: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(first sample, values)`` per block, NaN past each sample's length.

        ``values`` is ``(samples, time, unit)``, or ``(samples, time)`` for one ``unit``.
        """
        da = self.data if unit is None else self.data.isel(unit=unit)
        n = da.sizes["sample"]
        if da.chunks is not None:
            sizes = list(da.chunksizes["sample"])
        else:
            per_sample = max(1, int(np.prod([da.sizes[d] for d in da.dims if d != "sample"])))
            step = max(1, BLOCK_BYTES // (8 * per_sample))
            sizes = [min(step, n - i) for i in range(0, n, step)]
        start = 0
        for size in sizes:
            values = np.asarray(da.isel(sample=slice(start, start + size)).values, self.dtype)
            steps = np.arange(values.shape[1])
            pad = steps[None, :] >= self.lengths[start : start + size, None]
            values[pad] = np.nan
            yield start, values
            start += size


def states(ds: xr.Dataset, layer: Hashable, var: str = "h", direction: str = "forward") -> States:
    """One layer's ``var`` in one direction as :class:`States`, checked (for the viewer)."""
    return States(ds, layer, var, direction, "states")


def thresholds(st: States, q: float = PERCENTILE) -> np.ndarray:
    """Each unit's ``q``-th percentile over the valid steps (exact, numpy's "linear" rule)."""
    if not 0.0 <= q <= 100.0:
        raise OptionError(f"thresholds: q must be in [0, 100], got {q}")

    def rows() -> Iterator[np.ndarray]:
        for _, values in st.blocks():
            yield values.reshape(-1, st.units)

    return column_percentile(rows, q, st.dtype, st.units)
