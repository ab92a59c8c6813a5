"""Figures: what they draw comes from the dataset (values, coordinates, labels), never shown."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.figure import Figure
from test_analysis_fixtures import make_dataset

from seqacts.analysis.core import saturation
from seqacts.viz import figure_style, plots


@pytest.fixture()
def ds() -> xr.Dataset:
    ds = make_dataset(n_samples=10, n_time=8, seed=21)
    times = pd.date_range("2024-03-01 12:00", periods=8, freq="15min")
    ds = ds.assign_coords(time=times, is_anomaly=("sample", np.arange(10) % 2 == 1))
    ds["input"] = (("sample", "time", "channel"), np.random.default_rng(0).normal(size=(10, 8, 2)))
    return ds.assign_coords(channel=["temp", "flow"])


@pytest.fixture(autouse=True)
def _no_show(monkeypatch):
    plt = figure_style.pyplot()
    monkeypatch.setattr(plt, "show", lambda *a, **k: pytest.fail("plots must not call show()"))
    yield
    plt.close("all")


def test_heatmap_draws_each_direction_and_a_time_aligned_panel(ds: xr.Dataset) -> None:
    fig = ds.seqacts.plot.heatmap(sample=3, layer="enc.l0", panel="input")
    assert isinstance(fig, Figure)
    unit_axes = [ax for ax in fig.axes if ax.get_ylabel().startswith("unit")]
    meshes = [c for ax in unit_axes for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 2  # forward and backward of a bidirectional layer
    n = int(ds["length"].sel(sample=3, layer="enc.l0"))
    expected = ds["h"].sel(sample=3, layer="enc.l0", direction="forward").values[:n, :4].T
    np.testing.assert_allclose(meshes[0].get_array().reshape(4, n), expected)
    title = fig.axes[0].get_title(loc="left")
    assert "enc.l0" in title and "sample 3" in title and "is_anomaly=True" in title
    (panel,) = [ax for ax in fig.axes if ax.lines]
    assert [t.get_text() for t in panel.get_legend().get_texts()] == [
        "channel temp",
        "channel flow",
    ]
    assert isinstance(panel.xaxis.get_converter(), matplotlib.dates.DateConverter | type(None)) or (
        "Date" in type(panel.xaxis.get_major_formatter()).__name__
    )
    x = panel.lines[0].get_xdata()
    assert np.issubdtype(np.asarray(x).dtype, np.datetime64)


def test_heatmap_of_a_gate_and_step_change_panel(ds: xr.Dataset) -> None:
    fig = plots.heatmap(ds, 0, "enc.l1", var="forget_gate", panel="step_change")
    (mesh,) = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)]
    assert mesh.get_clim() == (0.0, 1.0)
    assert mesh.get_array().size == 5 * int(ds["length"].sel(sample=0, layer="enc.l1"))
    # enc.l1 is unidirectional: no empty line for its missing backward direction
    assert sum(len(ax.lines) for ax in fig.axes) == 1


def test_traces_colour_samples_by_group(ds: xr.Dataset) -> None:
    fig = ds.seqacts.plot.traces([0, 2], "enc.l0", group="is_anomaly")
    unit_axes = [ax for ax in fig.axes if ax.lines]
    assert len(unit_axes) == 2 and all(len(ax.lines) == 10 for ax in unit_axes)
    colours = {tuple(line.get_color()) if not isinstance(line.get_color(), str)
               else line.get_color() for line in unit_axes[0].lines}  # fmt: skip
    assert colours == {figure_style.BOOL_COLORS[False], figure_style.BOOL_COLORS[True]}
    labels = [t.get_text() for t in unit_axes[0].get_legend().get_texts()]
    assert sorted(labels) == ["is_anomaly=False", "is_anomaly=True"]
    assert unit_axes[1].get_ylabel() == "unit 2"


def test_saturation_scatter_has_the_diagonal_and_the_values(ds: xr.Dataset) -> None:
    fig = ds.seqacts.plot.saturation(low=0.2, high=0.8)
    sat = saturation(ds, low=0.2, high=0.8)
    gate_axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in gate_axes] == [
        "input gate", "forget gate", "output gate", "reset gate", "update gate"
    ]  # fmt: skip
    ax = gate_axes[1]
    np.testing.assert_allclose(ax.lines[0].get_xydata(), [[0, 1], [1, 0]])  # x + y = 1
    points = np.concatenate(
        [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    )
    expected = sat.sel(gate="forget_gate")
    ok = np.isfinite(expected["left"].values)
    assert len(points) == ok.sum()
    np.testing.assert_allclose(sorted(points[:, 0]), sorted(expected["left"].values[ok]))
    assert "< 0.2" in ax.get_xlabel()


def test_compare_bars_follow_the_ranking(ds: xr.Dataset) -> None:
    fig = ds.seqacts.plot.compare("is_anomaly", top=5)
    ax = fig.axes[0]
    result = ds.seqacts.compare("is_anomaly")
    heights = [bar.get_width() for bar in ax.patches]
    np.testing.assert_allclose(heights, result["d"].values[:5])
    assert "is_anomaly" in ax.get_xlabel()


def test_compare_bars_take_the_colour_of_the_kind_they_compare(ds: xr.Dataset) -> None:
    kind = xr.DataArray(["normal", "spike", "normal", "shift", "normal"] * 2, dims="sample",
                        name="kind")  # fmt: skip
    fig = plots.compare(ds, kind, top=8)
    result = ds.seqacts.compare(kind).isel(rank=slice(0, 8))
    colours = {"normal": figure_style.CYCLE[0], "shift": figure_style.CYCLE[1],
               "spike": figure_style.CYCLE[2]}  # baseline first, then in sorted order
    expected = [matplotlib.colors.to_rgba(colours[lv]) for lv in result["level"].values]
    assert {"shift", "spike"} == set(result["level"].values)
    assert [tuple(bar.get_facecolor()) for bar in fig.axes[0].patches] == expected


def test_heatmap_panel_legend_sits_above_the_lines(ds: xr.Dataset) -> None:
    fig = plots.heatmap(ds, 3, "enc.l0", panel="input")
    fig.canvas.draw()
    (panel,) = [ax for ax in fig.axes if ax.lines]
    legend = panel.get_legend().get_window_extent()
    for line in panel.lines:
        y = panel.transData.transform(line.get_xydata())[:, 1]
        assert y.max() < legend.y0  # no line runs under the legend


def test_distance_histograms_per_layer_with_auc(ds: xr.Dataset) -> None:
    fig = ds.seqacts.plot.distance(~ds["is_anomaly"], group="is_anomaly")
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split()[0] for t in titles] == ["enc.l0", "enc.l1", "dec"]
    assert all("AUC" in t for t in titles)


def test_agg_is_chosen_only_when_no_backend_is_set(monkeypatch) -> None:
    code = "import seqacts.viz.figure_style as fs; fs.pyplot(); import matplotlib; print(matplotlib.get_backend())"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip().lower() == "agg", out.stderr
    # a backend the user chose is left alone
    monkeypatch.setenv("MPLBACKEND", "svg")
    monkeypatch.delitem(sys.modules, "matplotlib.pyplot")
    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: pytest.fail("backend overridden"))
    figure_style.pyplot()


def test_bands_draw_each_groups_mean_and_interquartile_range(ds: xr.Dataset) -> None:
    fig = ds.seqacts.plot.bands([0, 2], "is_anomaly", layer="enc.l0")
    assert len(fig.axes) == 2
    lines = {ln.get_label(): ln for ln in fig.axes[0].lines}
    h = ds["h"].sel(layer="enc.l0", direction="forward", unit=0)
    h = h.where(xr.DataArray(np.arange(8), dims="time") < ds["length"].sel(layer="enc.l0"))
    expected = h.where(ds["is_anomaly"], drop=True).mean("sample").values
    line = lines["is_anomaly=True (n=5)"]
    ok = np.isfinite(line.get_ydata())
    np.testing.assert_allclose(line.get_ydata()[ok], expected[ok])
    assert line.get_color() == figure_style.BOOL_COLORS[True]


def test_bands_align_on_the_onset_and_heatmap_takes_several_panels(ds: xr.Dataset) -> None:
    mask = np.zeros((10, 8), dtype=bool)
    mask[1::2, 5:] = True
    ds["anomaly_mask"] = (("sample", "time"), mask)
    fig = ds.seqacts.plot.bands([1], "is_anomaly", layer="enc.l1", align="anomaly_mask")
    assert "since the first anomaly_mask step" in fig.axes[0].get_xlabel()
    steps = ds.seqacts.step_distance(~ds["is_anomaly"])
    fig = ds.seqacts.plot.heatmap(1, "enc.l0", panel=["input", steps], highlight="anomaly_mask")
    panels = [ax for ax in fig.axes if ax.lines]
    assert len(panels) == 2 and panels[1].get_ylabel() == "step distance"
    heat = [ax for ax in fig.axes if ax.get_ylabel().startswith("unit")]
    # one colourbar for all rows keeps the heatmaps and panels aligned in time
    assert {round(ax.get_position().x1, 3) for ax in heat + panels} == {
        round(panels[0].get_position().x1, 3)
    }


def test_group_colours_keep_the_baseline_blue_across_subsets() -> None:
    full = xr.DataArray(["spike", "normal", "frozen", "normal"], dims="sample", name="anomaly")
    colours = figure_style.group_colors(full)
    assert colours["normal"] == figure_style.CYCLE[0]
    assert figure_style.group_colors(full, baseline="spike")["spike"] == figure_style.CYCLE[0]
    assert len(set(colours.values())) == 3
