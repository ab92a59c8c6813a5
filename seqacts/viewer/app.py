"""The Panel app of ``seqacts view``: linked views drawn with HoloViews on Bokeh.

Each view draws what :class:`seqacts.viewer.data.Explorer` computes: selecting a row of the
windows table draws that window's panels; a drag (x-box select) on a layer's heatmap matches
the brushed steps; a tap on a heatmap opens the tapped unit; the trajectories follow the layer
and highlight the selected window. The widgets above the panels (steps, unit) do the same from
the keyboard.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401 - registers the Bokeh backend the options are for
import numpy as np
import panel as pn
from holoviews import streams

from ..errors import SeqactsError
from .data import Explorer, WindowView

__all__ = ["ViewerApp"]

PANEL_WIDTH = 760
#: Recordings whose ``h`` is at most this large draw their trajectories with the first page.
EAGER_BYTES = 256 * 2**20
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def _spans(mask: np.ndarray | None) -> list[tuple[int, int]]:
    """Contiguous runs of True as (first, last + 1) steps."""
    if mask is None or not mask.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _outline(mask: np.ndarray | None, low: float, high: float) -> hv.Rectangles:
    boxes = [(a - 0.5, low, b - 0.5, high) for a, b in _spans(mask)]
    return hv.Rectangles(boxes).opts(fill_alpha=0, line_color="red", line_width=2)


class ViewerApp:
    """One browser session's page over a shared :class:`Explorer`."""

    def __init__(self, explorer: Explorer, *, title: str, notice: str | None = None) -> None:
        self.ex = explorer
        self.sample: Hashable | None = None
        self.window_view: WindowView | None = None
        self.last_match: Any = None  # the Dataset of the latest match, for "Open"
        self.status = pn.pane.Markdown("Select a window in the table.", name="status")
        self.table = pn.widgets.Tabulator(
            explorer.table, pagination="local", page_size=15, selectable=1, show_index=False,
            disabled=True, width=520, height=470,
            header_filters={"group": {"type": "list", "valuesLookup": True}}
            if explorer.group else {},
        )  # fmt: skip
        self.table.param.watch(self._on_select, "selection")
        if explorer.group:
            names = sorted(set(explorer.table["group"]))
            colour = {g: COLORS[i % len(COLORS)] for i, g in enumerate(names)}
            self.table.style.map(lambda g: f"color: white; background-color: {colour[g]}",
                                 subset=["group"])  # fmt: skip
        self.layer = pn.widgets.Select(label="layer", options=explorer.layers, width=160)
        self.layer.param.watch(lambda _: self._draw_trajectories(), "value")
        self.steps = pn.widgets.IntRangeSlider(label="steps to match", start=0, end=1, value=(0, 1),
                                               width=260)  # fmt: skip
        self.match_button = pn.widgets.Button(label="Match these steps", color="primary")
        self.match_button.on_click(lambda _: self.run_match(self.layer.value, *map(int, self.steps.value)))
        self.unit_input = pn.widgets.IntInput(label="unit", value=0, start=0, width=90)
        self.unit_button = pn.widgets.Button(label="Open unit")
        self.unit_button.on_click(lambda _: self.open_unit(self.layer.value, int(self.unit_input.value or 0)))
        self.panels = pn.Column(pn.pane.Markdown("*no window selected*"), name="panels")
        self.matches = pn.Column(name="matches")
        self.unit = pn.Column(name="unit")
        self.trajectories = pn.Column(name="trajectories")
        # on a large recording the PCA (two reads of a layer) waits until asked for
        self.drawing = explorer.ds["h"].nbytes <= EAGER_BYTES
        self.draw_button = pn.widgets.Button(label="Draw trajectories (reads the layer twice)")
        self.draw_button.on_click(lambda _: self._start_trajectories())
        if not self.drawing:
            self.trajectories[:] = [self.draw_button]
        header = f"## seqacts view: {title}"
        if notice:
            header += f"\n\n**Note:** {notice}"
        controls = pn.Row(self.layer, self.steps, self.match_button, self.unit_input,
                          self.unit_button)  # fmt: skip
        left = pn.Column("### Windows", self.table, "### Trajectories", self.trajectories)
        right = pn.Column(controls, self.status, "### Window", self.panels,
                          "### Windows like the brushed steps", self.matches,
                          "### Unit", self.unit)  # fmt: skip
        self.layout = pn.Column(pn.pane.Markdown(header), pn.Row(left, right))
        if len(explorer.table):
            self.table.selection = [0]

    # -- windows and panels ---------------------------------------------------------------------

    def _on_select(self, event: Any) -> None:
        if event.new:
            self.select(self.table.value["sample"].iloc[event.new[0]])

    def select(self, sample: Hashable, span: tuple[int, int] | None = None) -> None:
        """Draw ``sample``'s panels (``span``: steps to outline, e.g. an opened match)."""
        self.sample = sample
        view = self.ex.window(sample)
        self.window_view = view
        self.steps.end = max(view.length, 1)
        self.steps.value = (0, min(view.length, 1))
        self.panels[:] = [pn.pane.HoloViews(self._panels(view, span), linked_axes=True)]
        self.status.object = (f"Window **sample {view.sample}**: {view.length} steps. Drag across "
                              "a heatmap to match steps; tap a unit to open it.")  # fmt: skip
        self._draw_trajectories()

    def _panels(self, view: WindowView, span: tuple[int, int] | None) -> hv.Layout:
        plots: list[Any] = []
        opts = {"frame_width": PANEL_WIDTH, "frame_height": 110, "tools": ["hover"],
                "xlabel": "time", "legend_position": "right"}  # fmt: skip
        mask = view.anomaly
        if view.input is not None:
            curves = [hv.Curve((np.arange(view.input.sizes["time"]), view.input.sel(
                {view.input.dims[-1]: ch}).values), "time", "input", label=str(ch))
                for ch in view.input[view.input.dims[-1]].values]  # fmt: skip
            plots.append((hv.Overlay(curves) * self._marks(mask, span)).opts(title="input", **opts))
        if view.step_distance is not None:
            sd = view.step_distance
            curves = [hv.Curve((np.arange(sd.sizes["time"]), sd.sel(layer=layer).values), "time",
                               "step_distance", label=layer) for layer in self.ex.layers]  # fmt: skip
            marked = hv.Overlay(curves) * self._marks(mask, span)
            plots.append(marked.opts(title="step_distance", **opts))
        for layer, da in view.states.items():
            units = np.arange(da.sizes["unit"])
            image = hv.Image((np.arange(da.sizes["time"]), units, np.asarray(da.values, float)),
                             ["time", "unit"], [self.ex.var])  # fmt: skip
            image = image.opts(title=f"{layer}: {self.ex.var} (unit x time)", cmap="RdBu_r",
                               symmetric=True, colorbar=True, frame_width=PANEL_WIDTH,
                               frame_height=max(120, min(380, 5 * len(units))),
                               tools=["hover", "xbox_select", "tap"],
                               active_tools=["xbox_select", "tap"])  # fmt: skip
            brush = streams.BoundsX(source=image)
            brush.add_subscriber(lambda boundsx, layer=layer: self._on_brush(layer, boundsx))
            tap = streams.SingleTap(source=image)
            tap.add_subscriber(lambda x, y, layer=layer: self._on_tap(layer, y))
            box = _outline(mask, -0.5, len(units) - 0.5)
            plots.append(image * box * self._marks(None, span, (-0.5, len(units) - 0.5)))
        return hv.Layout(plots).cols(1)

    def _marks(self, mask: np.ndarray | None, span: tuple[int, int] | None,
               band: tuple[float, float] | None = None) -> hv.Overlay:  # fmt: skip
        items: list[Any] = [hv.VSpan(a - 0.5, b - 0.5).opts(color="red", alpha=0.15)
                            for a, b in _spans(mask)]  # fmt: skip
        if span is not None:
            lo, hi = band if band is not None else (None, None)
            if lo is None:
                items.append(hv.VSpan(span[0] - 0.5, span[1] - 0.5).opts(color="gold", alpha=0.3))
            else:
                items.append(hv.Rectangles([(span[0] - 0.5, lo, span[1] - 0.5, hi)]).opts(
                    fill_alpha=0, line_color="gold", line_width=3))  # fmt: skip
        return hv.Overlay(items) if items else hv.Overlay([hv.VSpan(None, None)])

    # -- select and match -----------------------------------------------------------------------

    def _on_brush(self, layer: str, bounds: tuple[float, float] | None) -> None:
        if bounds is None or self.window_view is None:
            return
        # the steps whose cells (t - 0.5, t + 0.5) the brush touches
        a = int(np.floor(bounds[0] + 0.5))
        b = int(np.floor(bounds[1] + 0.5)) + 1
        a, b = max(a, 0), min(b, self.window_view.length)
        if b <= a:
            b = min(a + 1, self.window_view.length)
        self.steps.value = (a, b)
        self.layer.value = layer
        self.run_match(layer, a, b)

    def run_match(self, layer: str, start: int, stop: int) -> None:
        """Match steps ``start..stop-1`` of the selected window in ``layer``."""
        if self.sample is None:
            return
        try:
            found = self.ex.match(self.sample, layer, start, stop)
        except SeqactsError as err:
            self.matches[:] = [pn.pane.Alert(str(err), alert_type="warning")]
            return
        selected = [int(u) for u in np.flatnonzero(found["selected"].values)]
        lines = [f"**{found.sizes['rank']} windows** like steps {start}-{stop - 1} of sample "
                 f"{self.sample} in {layer}; units on throughout: {selected}", ""]  # fmt: skip
        rows = []
        tiles = []
        for r in range(found.sizes["rank"]):
            s, a, z = found["sample"].values[r], int(found["start"][r]), float(found["score"][r])
            rows.append(f"| {r + 1} | {s} | {a}-{a + stop - start - 1} | {z:.3f} |")
            tile = found["tile"].values[r]
            # own dims ("step", "match unit"): not linked to the window's time axis
            img = hv.Image((np.arange(tile.shape[1]), np.arange(tile.shape[0]), tile),
                           ["step", "match unit"], ["h"])  # fmt: skip
            img = img.opts(title=f"#{r + 1}: {s} @{a}, J={z:.2f}", width=170, height=140,
                           cmap="RdBu_r", symmetric=True, xaxis=None, yaxis=None,
                           toolbar=None, shared_axes=False, tools=["tap"])  # fmt: skip
            click = streams.SingleTap(source=img)  # a click on a tile opens its window
            click.add_subscriber(lambda x, y, r=r: self.open_match(found, r))
            tiles.append(img)
        table = "\n".join(["| rank | sample | steps | score |", "|---|---|---|---|", *rows])
        opener = pn.widgets.Select(label="open match", options={
            f"#{r + 1}: sample {found['sample'].values[r]} @{int(found['start'][r])}": r
            for r in range(found.sizes["rank"])}, width=260)  # fmt: skip
        go = pn.widgets.Button(label="Open", width=80)
        go.on_click(lambda _: self.open_match(found, int(opener.value)))
        grid = pn.pane.HoloViews(hv.Layout(tiles).cols(4)) if tiles else pn.pane.Markdown("")
        self.matches[:] = [pn.pane.Markdown("\n".join(lines) + "\n" + table, name="match-table"),
                           pn.Row(opener, go) if rows else pn.Spacer(), grid]  # fmt: skip
        self.last_match = found

    def open_match(self, found: Any, rank: int) -> None:
        """Select the window of match ``rank`` and outline its steps."""
        s, a = found["sample"].values[rank], int(found["start"][rank])
        self.select(s, (a, int(found["stop"][rank])))

    # -- unit -----------------------------------------------------------------------------------

    def _on_tap(self, layer: str, y: float | None) -> None:
        if y is not None:
            self.open_unit(layer, int(round(y)))

    def open_unit(self, layer: str, unit: int) -> None:
        """Show ``unit`` of ``layer``: top windows, distribution per group, gate saturation."""
        try:
            uv = self.ex.unit(layer, unit)
        except SeqactsError as err:
            self.unit[:] = [pn.pane.Alert(str(err), alert_type="warning")]
            return
        self.unit_input.value = unit
        top = uv.top
        rows = [f"| {r + 1} | {top['sample'].values[r]} | {int(top['start'][r])}-"
                f"{int(top['stop'][r]) - 1} | {float(top['score'][r]):.4f} |"
                for r in range(top.sizes["rank"])]  # fmt: skip
        text = "\n".join([f"**unit {unit} of {layer}**: top windows (mean {self.ex.var} over "
                          f"{top.attrs['width']} steps)", "",
                          "| rank | sample | steps | mean |", "|---|---|---|---|", *rows])  # fmt: skip
        curves = [hv.Curve((np.arange(top.sizes["step"]), top["values"].values[r]), "step",
                           self.ex.var, label=f"{top['sample'].values[r]}@{int(top['start'][r])}")
                  for r in range(top.sizes["rank"])]  # fmt: skip
        parts: list[Any] = [pn.pane.Markdown(text, name="unit-table")]
        plots: list[Any] = []
        if curves:
            plots.append(hv.Overlay(curves).opts(title="top windows", width=360, height=240,
                                                 show_legend=False, tools=["hover"]))  # fmt: skip
        if len(uv.by_group):
            plots.append(hv.BoxWhisker(uv.by_group, "group", "mean").opts(
                title=f"per-sample mean of {self.ex.var}, by group", width=360, height=240))
        if len(uv.saturation):
            sat = uv.saturation.melt("gate", var_name="side", value_name="fraction")
            plots.append(hv.Bars(sat, ["gate", "side"], "fraction").opts(
                title="gate saturation (<0.1 left, >0.9 right)", width=360, height=240,
                tools=["hover"], xrotation=30))  # fmt: skip
        if plots:
            parts.append(pn.pane.HoloViews(hv.Layout(plots).cols(2)))
        self.unit[:] = parts

    # -- trajectories ---------------------------------------------------------------------------

    def _start_trajectories(self) -> None:
        self.drawing = True
        self.trajectories[:] = [pn.pane.Markdown("*computing the principal components...*")]
        self._draw_trajectories()

    def _draw_trajectories(self) -> None:
        if not self.drawing:
            return
        layer = self.layer.value
        try:
            tr = self.ex.trajectories(layer)
        except SeqactsError as err:
            self.trajectories[:] = [pn.pane.Alert(str(err), alert_type="warning")]
            return
        names = sorted(set(self.ex.table["group"])) if self.ex.group else ["all"]
        color = {g: COLORS[i % len(COLORS)] for i, g in enumerate(names)}  # as in the table
        paths = [{"pc1": line[:, 0], "pc2": line[:, 1], "group": g}
                 for line, g in zip(tr.lines, tr.groups, strict=True) if len(line)]  # fmt: skip
        plot = hv.Path(paths, ["pc1", "pc2"], "group").opts(
            color="group", cmap=color, alpha=0.35, line_width=1, width=520, height=420,
            title=f"{layer}: h on PCs of {tr.reference} ({tr.explained[0]:.0%}, "
                  f"{tr.explained[1]:.0%})", show_legend=True)  # fmt: skip
        if self.sample is not None:
            pos = self.ex.position(self.sample)
            if pos in set(tr.samples.tolist()):
                line = tr.lines[int(np.flatnonzero(tr.samples == pos)[0])]
                plot = plot * hv.Curve(line, "pc1", "pc2").opts(color="black", line_width=3)
        self.trajectories[:] = [pn.pane.HoloViews(plot)]
