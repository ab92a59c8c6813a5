"""What the viewer shows, computed from a recording without any web library.

:class:`Explorer` answers each view's question from a (possibly lazy) seqacts dataset: the
windows table, one window's aligned panels, the matches of a brushed range, a unit's top
windows, per-group distribution and gate saturation, and the trajectories of a layer's states
on two principal components fitted on the reference group. The Panel app (``app.py``) only
draws what it returns, so all of it is tested without a browser.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import xarray as xr

from ..analysis.blocks import States, thresholds
from ..analysis.core import HIGH, LOW
from ..analysis.core import layer as layer_of
from ..analysis.windows import match, top_windows
from ..errors import GroupError, MissingVariableError, OptionError
from ..schema import SIGMOID_GATES

__all__ = ["Explorer", "Trajectories", "UnitView", "WindowView"]

#: At most this many windows are drawn as trajectories (the selected one always among them).
MAX_TRAJECTORIES = 300


@dataclass(frozen=True)
class WindowView:
    """One sample's aligned panels: ``input`` (time, channel), ``step_distance`` (layer,
    time), ``states`` per layer (unit, time) and the ``anomaly`` steps (a boolean over time)."""

    sample: Hashable
    position: int
    length: int
    input: xr.DataArray | None
    step_distance: xr.DataArray | None
    states: dict[str, xr.DataArray]
    anomaly: np.ndarray | None


@dataclass(frozen=True)
class UnitView:
    """A unit's top windows, its per-sample mean by group, and its gates' saturation."""

    layer: str
    unit: int
    top: xr.Dataset
    by_group: pd.DataFrame  # columns: group, mean (one row per sample with valid steps)
    saturation: pd.DataFrame  # columns: gate, left, right (empty without gates)


@dataclass(frozen=True)
class Trajectories:
    """States of a layer on two principal components, one (time, 2) line per drawn window."""

    layer: str
    samples: np.ndarray  # positions of the drawn windows
    lines: list[np.ndarray]
    groups: list[str]
    explained: tuple[float, float]
    reference: str


class Explorer:
    """The viewer's questions, answered from a seqacts dataset.

    Parameters
    ----------
    ds : xarray.Dataset
        A seqacts dataset with ``h`` (eager or opened lazily).
    group : str, optional
        A label along ``sample`` whose values colour and filter the windows; default the first
        of ``anomaly``, ``is_anomaly``, ``label``, ``group`` present, or none.
    score : str, optional
        The column the windows table is sorted by (descending); default the first score.
    var : str, default "h"
        The per-step variable drawn as each layer's heatmap (``c``, a gate, ``grad_h``).
    """

    def __init__(
        self, ds: xr.Dataset, *, group: str | None = None, score: str | None = None,
        var: str = "h",
    ) -> None:  # fmt: skip
        if "h" not in ds.data_vars or "layer" not in ds.dims:
            raise MissingVariableError(
                "view: the dataset has no 'h' (or no 'layer' dimension), so there are no states "
                "to show; record one with seqacts.extract(...) or `seqacts extract`"
            )
        if var not in ds.data_vars or "time" not in ds[var].dims or "unit" not in ds[var].dims:
            steps = [str(k) for k, v in ds.data_vars.items() if {"time", "unit"} <= set(v.dims)]
            raise MissingVariableError(
                f"view: no per-step variable {var!r}; per-step variables: {', '.join(steps)}"
            )
        self.ds = ds
        self.var = var
        self.layers = [str(v) for v in ds["layer"].values]
        self.group = self._group(group)
        self.scores = self._scores()
        if score is not None and score not in self.scores:
            raise OptionError(
                f"view: --score {score!r} is not a per-sample score of this recording; scores: "
                f"{', '.join(self.scores) or 'none'}"
            )
        self.score = score or (next(iter(self.scores)) if self.scores else None)
        self._thresholds: dict[str, np.ndarray] = {}
        self._trajectories: dict[str, Trajectories] = {}

    def _group(self, group: str | None) -> str | None:
        labels = [str(k) for k, v in self.ds.coords.items() if v.dims == ("sample",) and k != "sample"]
        labels += [str(k) for k, v in self.ds.data_vars.items() if v.dims == ("sample",)
                   and v.dtype.kind in "bUSO"]  # fmt: skip
        if group is None:
            return next((g for g in ("anomaly", "is_anomaly", "label", "group") if g in labels), None)
        if group not in labels:
            raise GroupError(
                f"view: --group {group!r} is not a label along sample; labels: "
                f"{', '.join(labels) or 'none (attach them with `seqacts extract --coords FILE`)'}"
            )
        return group

    def _scores(self) -> dict[str, xr.DataArray]:
        """Per-sample numbers: variables along sample alone, per layer ones, step maxima."""
        out: dict[str, xr.DataArray] = {}
        for name, v in self.ds.data_vars.items():
            if v.dims == ("sample",) and v.dtype.kind in "iuf":
                out[str(name)] = v
            elif v.dims == ("sample", "layer") and v.dtype.kind == "f":
                for i, layer in enumerate(self.layers):
                    out[f"{name}[{layer}]"] = v.isel(layer=i)
        if "step_distance" in self.ds and set(self.ds["step_distance"].dims) == {
                "sample", "layer", "time"}:  # fmt: skip
            peak = self.ds["step_distance"].max("time")
            for i, layer in enumerate(self.layers):
                out[f"max step_distance[{layer}]"] = peak.isel(layer=i)
        return out

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per window: sample label, group, length, every score."""
        ds = self.ds
        n = ds.sizes["sample"]
        labels = ds["sample"].values if "sample" in ds.coords else np.arange(n)
        frame = pd.DataFrame({"sample": labels})
        if self.group is not None:
            frame["group"] = np.asarray(ds[self.group].values).astype(str)
        if "length" in ds.coords:
            frame["length"] = np.asarray(ds["length"].max("layer").values if "layer" in
                                         ds["length"].dims else ds["length"].values)  # fmt: skip
        for name, score in self.scores.items():
            frame[name] = np.asarray(score.values, dtype=np.float64)
        if self.score is not None:
            frame = frame.sort_values(self.score, ascending=False, kind="stable")
        return frame.reset_index(drop=True)

    def position(self, sample: Hashable) -> int:
        index = self.ds.indexes.get("sample")
        if index is None:
            return int(sample)  # type: ignore[call-overload]
        try:
            return int(index.get_loc(sample))
        except KeyError:
            raise OptionError(f"view: no sample {sample!r}") from None

    def states(self, layer: str, var: str | None = None) -> States:
        return States(self.ds, layer, var or self.var, "forward", "view")

    def window(self, sample: Hashable) -> WindowView:
        """The selected window's panels, each cut to its valid steps."""
        pos = self.position(sample)
        one = self.ds.isel(sample=pos)
        length = int(one["length"].max()) if "length" in one.coords else one.sizes["time"]
        steps = slice(0, max(length, 1))
        states = {}
        for layer in self.layers:
            sub = layer_of(one.expand_dims("sample"), layer).isel(sample=0)
            da = sub[self.var] if self.var in sub else None
            if da is None:
                continue
            if "direction" in da.dims:
                da = da.stack(feature=("direction", "unit"))
                da = da.assign_coords(feature=[f"{d[0]}{u}" for d, u in da["feature"].values])
                da = da.rename(feature="unit")
            n = int(sub["length"]) if "length" in sub.coords else da.sizes["time"]
            states[layer] = da.isel(time=slice(0, n)).transpose("unit", "time").load()
        inp = one["input"].isel(time=steps).load() if "input" in one and "time" in one["input"].dims else None
        dist = None
        if "step_distance" in one and "time" in one["step_distance"].dims:
            dist = one["step_distance"].isel(time=steps).load()
        mask = None
        if "anomaly_mask" in one and one["anomaly_mask"].dims == ("time",):
            mask = np.asarray(one["anomaly_mask"].isel(time=steps).values, dtype=bool)
        label = self.ds["sample"].values[pos] if "sample" in self.ds.coords else pos
        return WindowView(label, pos, length, inp, dist, states, mask)

    def thresholds(self, layer: str) -> np.ndarray:
        """Each unit's 80th percentile (match's default), computed once per layer."""
        if layer not in self._thresholds:
            self._thresholds[layer] = thresholds(States(self.ds, layer, "h", "forward", "view"))
        return self._thresholds[layer]

    def match(self, sample: Hashable, layer: str, start: int, stop: int, top: int = 12) -> xr.Dataset:
        """``seqacts.match`` of a brushed range, with each match's states (unit x step) added."""
        pos = self.position(sample)
        label = self.ds["sample"].values[pos] if "sample" in self.ds.coords else pos
        limits = [float(v) for v in self.thresholds(layer)]
        found = match(self.ds, label, layer, slice(start, stop), threshold=limits, top=top)
        st = States(self.ds, layer, "h", "forward", "view")
        width = stop - start
        tiles = np.full((found.sizes["rank"], st.units, width), np.nan)
        for r in range(found.sizes["rank"]):
            where = self.position(found["sample"].values[r])
            a = int(found["start"][r])
            values = st.data.isel(sample=where, time=slice(a, a + width)).values
            tiles[r] = np.asarray(values, dtype=np.float64).T
        return found.assign(tile=(("rank", "unit", "step"), tiles))

    def unit(self, layer: str, unit: int, *, width: int = 8, top: int = 10) -> UnitView:
        """Top windows, per-group distribution of the per-sample mean, gate saturation."""
        tops = top_windows(self.ds, layer, unit, width=width, top=top, var=self.var)
        st = self.states(layer)
        means = np.full(st.data.sizes["sample"], np.nan)
        for first, block in st.blocks(unit=unit):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                means[first : first + len(block)] = np.nanmean(block.astype(np.float64), axis=1)
        groups = (np.asarray(self.ds[self.group].values).astype(str) if self.group
                  else np.full(len(means), "all"))  # fmt: skip
        keep = ~np.isnan(means)
        by_group = pd.DataFrame({"group": groups[keep], "mean": means[keep]})
        rows = []
        for gate in SIGMOID_GATES:
            if gate not in self.ds:
                continue
            gst = States(self.ds, layer, gate, "forward", "view")
            if unit >= gst.units:
                continue
            low = high = count = 0
            for _, block in gst.blocks(unit=unit):
                ok = ~np.isnan(block)
                low += int((block[ok] < LOW).sum())
                high += int((block[ok] > HIGH).sum())
                count += int(ok.sum())
            if count:
                rows.append({"gate": gate, "left": low / count, "right": high / count})
        saturation = pd.DataFrame(rows, columns=["gate", "left", "right"])
        return UnitView(layer, int(unit), tops, by_group, saturation)

    def reference(self) -> tuple[np.ndarray, str]:
        """The samples PCA is fitted on: the group's baseline (False, "normal", or its most
        frequent value), or every sample without a group."""
        n = self.ds.sizes["sample"]
        if self.group is None:
            return np.ones(n, dtype=bool), "all windows"
        values = np.asarray(self.ds[self.group].values)
        if values.dtype.kind == "b":
            return ~values, f"{self.group} == False"
        text = values.astype(str)
        base = "normal" if "normal" in text else pd.Series(text).value_counts().index[0]
        return text == base, f"{self.group} == {base}"

    def trajectories(self, layer: str) -> Trajectories:
        """Each window's states on the first two principal components of the reference's."""
        if layer in self._trajectories:
            return self._trajectories[layer]
        st = States(self.ds, layer, "h", "forward", "view")
        ref, described = self.reference()
        n = 0
        s1 = np.zeros(st.units)
        s2 = np.zeros((st.units, st.units))
        for first, block in st.blocks():
            rows = block[ref[first : first + len(block)]].reshape(-1, st.units).astype(np.float64)
            rows = rows[~np.isnan(rows).any(axis=1)]
            n += len(rows)
            s1 += rows.sum(axis=0)
            s2 += rows.T @ rows
        if n < 2:
            raise OptionError(f"view: fewer than 2 valid steps in the reference ({described})")
        mean = s1 / n
        cov = (s2 - n * np.outer(mean, mean)) / (n - 1)
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1][:2]
        axes = vectors[:, order]
        axes *= np.sign(axes[np.abs(axes).argmax(axis=0), range(axes.shape[1])])  # fixed sign
        total = values.sum()
        explained = tuple(float(values[i] / total) if total > 0 else 0.0 for i in order)
        drawn = self._drawn(st.data.sizes["sample"])
        wanted = set(drawn.tolist())
        found: dict[int, np.ndarray] = {}
        for first, block in st.blocks():
            for row in range(len(block)):
                if first + row in wanted:
                    x = block[row, : int(st.lengths[first + row])].astype(np.float64)
                    found[first + row] = (x - mean) @ axes
        lines = [found[int(p)] for p in drawn]
        groups = (np.asarray(self.ds[self.group].values).astype(str)[drawn] if self.group
                  else np.full(len(drawn), "all"))  # fmt: skip
        pad = (*explained, 0.0)[:2]
        out = Trajectories(layer, drawn, lines, list(groups), (pad[0], pad[1]), described)
        self._trajectories[layer] = out
        return out

    def _drawn(self, n: int) -> np.ndarray:
        if n <= MAX_TRAJECTORIES:
            return np.arange(n)
        return np.unique(np.linspace(0, n - 1, MAX_TRAJECTORIES).astype(np.int64))
