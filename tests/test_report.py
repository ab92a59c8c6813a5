"""The HTML report is self-contained, says what the dataset holds and has every section for
boolean and categorical groups; a real headless browser renders it when one is installed."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.text import Text
from test_analysis_fixtures import L, make_dataset

from seqacts.viz.html_page import Page
from seqacts.viz.report import report

KINDS = ("spike", "shift")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.headings: list[str] = []
        self._in_h = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        for key in ("src", "href"):
            value = str(a.get(key) or "")
            if value.startswith("#"):
                self.links.append(value[1:])
            elif value and not value.startswith("data:"):
                self.external.append(value)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        self._in_h = tag in ("h2", "h3")

    def handle_data(self, data: str) -> None:
        if self._in_h:
            self.headings.append(data)
            self._in_h = False


def _parse(path: Path) -> tuple[_Tags, str]:
    text = path.read_text(encoding="utf-8")
    tags = _Tags()
    tags.feed(text)
    return tags, text


def _anomalies(n: int = 24, t: int = 12, seed: int = 40) -> xr.Dataset:
    """Normal, spike and shift windows; unit 1 of enc.l0 departs on the masked steps."""
    ds = make_dataset((L("enc.l0", "LSTM", 4, None, 2), L("dec", "GRU", 3)), n_samples=n,
                      n_time=t, lengths=np.full((n, 2), t), seed=seed)  # fmt: skip
    kinds = np.array(["normal", *KINDS] * (n // 3))
    mask = np.zeros((n, t), dtype=bool)
    for s, kind in enumerate(kinds):
        start = 4 + s % 4
        if kind == "spike":
            mask[s, start : start + 2] = True
        elif kind == "shift":
            mask[s, start:] = True
    h = ds["h"].values
    h[:, 0, 0, :, 1] += np.where(mask, 2.5, 0.0)
    ds["h"][:] = h
    ds = ds.assign_coords(anomaly=("sample", kinds), is_anomaly=("sample", kinds != "normal"))
    rng = np.random.default_rng(seed)
    ds["input"] = (("sample", "time", "channel"), rng.normal(size=(n, t, 2)) + mask[..., None])
    ds["anomaly_mask"] = (("sample", "time"), mask)
    ds["reconstruction_error"] = ("sample", rng.normal(size=n) + (kinds != "normal"))
    return ds


def _small_text_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every figure of a report: no text below 9 pt (tick labels, legends, titles)."""
    original = Page.figure

    def figure(self, fig, name, caption, lead=""):
        original(self, fig, name, caption, lead)  # draws it: tick labels exist
        small = [(t.get_text(), t.get_fontsize()) for t in fig.findobj(Text)
                 if t.get_visible() and t.get_text().strip() and t.get_fontsize() < 9]  # fmt: skip
        assert not small, f"{name}: text under 9 pt: {small[:5]}"

    monkeypatch.setattr(Page, "figure", figure)


def _scan(ds: xr.Dataset) -> xr.Dataset:
    """An ablation scan as the interventions return it: unit 1 of enc.l0 drives the score."""
    rng = np.random.default_rng(1)
    dims = ("sample", "layer", "direction", "unit")
    effect = xr.DataArray(rng.normal(0, 0.01, [ds.sizes[d] for d in dims]), dims=dims,
                          coords={d: ds[d] for d in dims})  # fmt: skip
    effect.loc[{"layer": "enc.l0", "direction": "forward", "unit": 1}] = 0.5
    return xr.Dataset({"effect": effect, "mean_effect": effect.mean("sample")})


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """The report of one dataset by its boolean group and, with an ablation scan, by kind."""
    ds = _anomalies()
    out = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as mp:
        _small_text_check(mp)
        return {
            "is_anomaly": report(ds, out / "is_anomaly", group="is_anomaly"),
            "anomaly": report(ds, out / "anomaly", group="anomaly", ablation=_scan(ds)),
        }


def _check_common(tags: _Tags, out: Path) -> None:
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(tags.images) == len(pngs)
    for src in tags.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert tags.external == []  # nothing to fetch: readable offline, no server
    assert tags.links and set(tags.links) == set(tags.ids)  # the contents link every section
    assert {"Layers", "Anomaly scores per kind", "Gate saturation", "Dead units", "Provenance",
            "Dataset"} <= set(tags.headings)  # fmt: skip


@pytest.mark.parametrize("group", ["is_anomaly", "anomaly"])
def test_every_section_with_a_boolean_and_a_categorical_group(reports, group) -> None:
    path = reports[group]
    tags, text = _parse(path)
    _check_common(tags, path.parent)
    for kind in KINDS:  # the boolean group finds its kinds in the `anomaly` coordinate
        assert {f"Kind: {kind}", f"Typical {kind} window", f"Units that carry {kind}",
                f"Ablation effects for {kind}"} <= set(tags.headings)  # fmt: skip
        assert (path.parent / f"example_{kind}.png").exists()
        assert (path.parent / f"units_{kind}.png").exists()
    assert "Units that respond to anomaly over whole windows" in tags.headings
    for score in ("final-state distance enc.l0", "max step distance enc.l0",
                  "max step change dec", "reconstruction_error (attached)"):  # fmt: skip
        assert score in text
    assert "the median-scoring spike window" in text and "dashed boxes: anomaly_mask" in text
    # the departing unit is found for each kind, its effect stated in words
    assert "[spike] enc.l0 u1</td><td>" in text and "[shift] enc.l0 u1</td><td>" in text
    assert "large" in text and "negligible" in text
    if group == "anomaly":
        assert "No ablation scan given" not in text
        assert "ablation effect on spike" in text and "+0.5" in text
    else:
        assert "No ablation scan given" in text


def test_a_boolean_group_without_kinds_is_one_kind(tmp_path) -> None:
    ds = _anomalies(n=12).drop_vars("anomaly")
    tags, text = _parse(report(ds, tmp_path))
    _check_common(tags, tmp_path)
    assert "Kind: is_anomaly=True" in tags.headings
    assert "Typical is_anomaly=True window" in tags.headings


def test_report_without_groups_or_internals(tmp_path) -> None:
    ds = make_dataset(n_samples=5, internals=False, seed=32)
    tags, text = _parse(report(ds, tmp_path))
    assert "Gate saturation" not in tags.headings
    assert "Anomaly scores per kind" not in tags.headings
    assert len(tags.images) == 3  # one heatmap per layer
    for value in ds.attrs.values():
        assert str(value) in text


def test_a_report_that_fails_while_built_changes_no_file(tmp_path, monkeypatch) -> None:
    ds = _anomalies(n=12)
    report(ds, tmp_path, group="is_anomaly")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert "report.html" in before and any(name.endswith(".png") for name in before)

    def broken(*args, **kwargs):
        raise RuntimeError("a figure failed")

    monkeypatch.setattr("seqacts.viz.report.plots.saturation", broken)
    with pytest.raises(RuntimeError, match="a figure failed"):
        report(_anomalies(n=12, seed=41), tmp_path, group="anomaly")  # other data and figures
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_report_reads_a_lazy_dataset_and_a_reference_dataset(tmp_path) -> None:
    ds = make_dataset(n_samples=12, seed=33)
    ds = ds.assign_coords(is_anomaly=("sample", np.arange(12) >= 8))
    ds.to_netcdf(tmp_path / "a.nc")
    reference = make_dataset(n_samples=20, seed=34)
    with xr.open_dataset(tmp_path / "a.nc", chunks={"sample": 5}) as lazy:
        tags, text = _parse(report(lazy, tmp_path / "r", reference=reference, title="My run"))
    assert "<h1>My run</h1>" in text
    assert "a separate reference dataset" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
@pytest.mark.parametrize("group", ["is_anomaly", "anomaly"])
def test_report_renders_in_a_headless_browser(reports, tmp_path, group) -> None:
    from matplotlib.image import imread

    path = reports[group]
    shot = tmp_path / "page.png"
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run([*args, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout  # fmt: skip
    for kind in KINDS:
        assert f'id="kind-{kind}"' in dom and f'href="#typical-{kind}-window"' in dom
    assert dom.count("<img") == len(list(path.parent.glob("*.png")))
    subprocess.run([*args, f"--screenshot={shot}", "--window-size=1400,3000", path.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    pixels = imread(shot)
    assert pixels.shape[:2] == (3000, 1400)
    assert pixels[..., :3].std() > 0.05  # text and figures, not a blank page


def test_cli_report_with_a_categorical_group(tmp_path, capsys) -> None:
    from seqacts.cli import main

    _anomalies(n=12).to_netcdf(tmp_path / "acts.nc")
    args = ["report", str(tmp_path / "acts.nc"), "--out", str(tmp_path / "r")]
    assert main([*args, "--group", "anomaly", "--baseline", "normal"]) == 0
    tags, _ = _parse(tmp_path / "r" / "report.html")
    assert {"Kind: spike", "Kind: shift", "Anomaly scores per kind"} <= set(tags.headings)
    assert main([*args, "--group", "is_anomaly", "--kinds", "nope"]) == 2
    assert "--kinds" in capsys.readouterr().err
