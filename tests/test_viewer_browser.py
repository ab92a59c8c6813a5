"""``seqacts view`` driven in headless Chromium: the page, a window, a brush, a unit click.

Needs Playwright (``seqacts[view]``'s test set-up) and a system Chromium (Debian's ``chromium``
package at /usr/bin/chromium; Playwright's own browser download is not used). Skipped when
either is missing. Each number the page shows is checked against the library's functions.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import seqacts

pytest.importorskip("panel")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium installed")

from viewer_fixtures import labelled_recording  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]  # fmt: skip
LAYER = "l0"
#: Where a plot's frame lies on the page, and its data ranges, from Bokeh's own views.
FRAME_JS = """(title) => {
  const out = [];
  const walk = (v) => { out.push(v); for (const c of (v.child_views ?? [])) walk(c); };
  const idx = Bokeh.index;
  (idx instanceof Map ? [...idx.values()] : Object.values(idx)).forEach(walk);
  const plots = out.filter(v => v.model && v.model.title && v.model.title.text !== undefined);
  const p = plots.find(v => v.model.title.text.startsWith(title));
  const titles = plots.map(v => v.model.title.text);
  if (!p) return {titles};
  const r = p.canvas_view.el.getBoundingClientRect(), f = p.frame.bbox;
  return {titles, left: r.left + f.left, top: r.top + f.top, width: f.width, height: f.height,
          x0: p.frame.x_range.start, x1: p.frame.x_range.end,
          y0: p.frame.y_range.start, y1: p.frame.y_range.end};
}"""


def query_window(ds: xr.Dataset) -> tuple[int, int]:
    """A sample and step where some unit of LAYER is above its 80th percentile for 2 steps."""
    h = ds["h"].sel(layer=LAYER).values[:, 0].astype(np.float64)
    thr = np.percentile(h.reshape(-1, h.shape[-1]), 80, axis=0)
    on = h > thr
    both = on[:, 2:-3] & on[:, 3:-2]  # steps t, t+1 away from the edges
    s, t, _ = np.argwhere(both)[0]
    return int(s), int(t) + 2


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[xr.Dataset, str, int, int]]:
    ds = labelled_recording()
    sample, step = query_window(ds)
    ds["pick"] = ("sample", (ds["sample"].values == sample).astype(float))  # first row
    path = tmp_path_factory.mktemp("view") / "acts.nc"
    ds.to_netcdf(path)
    proc = subprocess.Popen([sys.executable, "-m", "seqacts.cli", "view", str(path), "--port", "0",
                             "--no-browser", "--score", "pick"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        match = re.search(r"at (http://127\.0\.0\.1:(\d+)/)", line)
        assert match, line + proc.stderr.read()
        port = int(match.group(2))
        for _ in range(600):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield ds, match.group(1), sample, step
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def frame(page, title: str) -> dict:
    return page.evaluate(FRAME_JS, title)


def to_pixel(f: dict, x: float, y: float) -> tuple[float, float]:
    px = f["left"] + (x - f["x0"]) / (f["x1"] - f["x0"]) * f["width"]
    py = f["top"] + (f["y1"] - y) / (f["y1"] - f["y0"]) * f["height"]
    return px, py


def tables(page) -> list[str]:
    return page.locator("table").all_inner_texts()


def wait_for_table(page, header: str, timeout: float = 120) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [t for t in tables(page) if header in t]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no table with {header!r}; tables: {tables(page)}")


def rows_of(text: str) -> list[list[str]]:
    lines = [line.split("\t") for line in text.strip().splitlines()[1:]]
    return [[c.strip() for c in line] for line in lines]


def test_page_window_brush_and_unit(served, tmp_path: Path) -> None:
    ds, url, sample, step = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1900})
            page.set_default_timeout(180_000)
            page.goto(url)
            page.wait_for_selector(f"text=Window sample {sample}")
            # windows: every sample listed (15 a page), the picked one first, with its group
            rows = page.locator(".tabulator-row")
            assert rows.count() == 15
            assert page.locator(".tabulator-page").filter(has_text="2").count() >= 1
            first = rows.first.inner_text().split("\n")
            assert first[0] == str(sample) and first[1] == ds["anomaly"].values[sample]
            # selecting another window draws its panels
            other = rows.nth(2).inner_text().split("\n")[0]
            rows.nth(2).click()
            page.wait_for_selector(f"text=Window sample {other}")
            titles = frame(page, "nothing")["titles"]
            for title in ("input", "step_distance", f"{LAYER}: h", "l1: h"):
                assert any(t.startswith(title) for t in titles), titles
            rows.first.click()
            page.wait_for_selector(f"text=Window sample {sample}")
            time.sleep(1)
            # brush steps step..step+1 of LAYER's heatmap -> the matches of those steps
            f = frame(page, f"{LAYER}: h (unit x time)")
            x0, y = to_pixel(f, step - 0.3, 2.0)
            x1, _ = to_pixel(f, step + 1.3, 2.0)
            page.mouse.move(x0, y)
            page.mouse.down()
            page.mouse.move((x0 + x1) / 2, y, steps=4)
            page.mouse.move(x1, y, steps=4)
            page.mouse.up()
            page.wait_for_selector(f"text=/like steps {step}-{step + 1} of sample {sample}/")
            shown = rows_of(wait_for_table(page, "score"))
            expected = seqacts.match(ds, sample, LAYER, slice(step, step + 2), top=12)
            assert len(shown) == expected.sizes["rank"] > 0
            for r, row in enumerate(shown):
                assert row == [str(r + 1), str(int(expected["sample"][r])),
                               f"{int(expected['start'][r])}-{int(expected['start'][r]) + 1}",
                               f"{float(expected['score'][r]):.3f}"]  # fmt: skip
            # a click on a match's tile opens its window
            r = next(r for r in range(expected.sizes["rank"])
                     if int(expected["sample"][r]) != sample)  # fmt: skip
            tile = frame(page, f"#{r + 1}: ")
            page.mouse.click(tile["left"] + tile["width"] / 2, tile["top"] + tile["height"] / 2)
            page.wait_for_selector(f"text=Window sample {int(expected['sample'][r])}")
            time.sleep(1)
            # tap unit 3 of LAYER -> its top windows
            tx, ty = to_pixel(frame(page, f"{LAYER}: h (unit x time)"), 5.0, 3.0)
            page.mouse.click(tx, ty)
            page.wait_for_selector(f"text=unit 3 of {LAYER}")
            shown = rows_of(wait_for_table(page, "mean"))
            top = seqacts.top_windows(ds, LAYER, 3, width=8, top=10)
            assert [row[1:3] for row in shown] == [
                [str(int(top["sample"][r])), f"{int(top['start'][r])}-{int(top['stop'][r]) - 1}"]
                for r in range(top.sizes["rank"])]  # fmt: skip
            assert [float(row[3]) for row in shown] == pytest.approx(
                [round(float(v), 4) for v in top["score"].values], abs=1e-12)
            page.screenshot(path=str(tmp_path / "view.png"), full_page=True)
        finally:
            browser.close()
