"""The HTML report is self-contained and says what the dataset holds."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import numpy as np
import xarray as xr
from test_analysis_fixtures import make_dataset

from seqacts.viz.report import report


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.headings: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        for key in ("src", "href"):
            if a.get(key) and not str(a[key]).startswith("data:"):
                self.external.append(str(a[key]))
        self._in_h2 = tag == "h2"

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def _parse(path) -> tuple[_Tags, str]:
    text = path.read_text(encoding="utf-8")
    tags = _Tags()
    tags.feed(text)
    return tags, text


def test_report_embeds_every_figure_and_the_provenance(tmp_path) -> None:
    ds = make_dataset(n_samples=16, n_time=6, seed=31)
    ds = ds.assign_coords(is_anomaly=("sample", np.arange(16) % 4 == 0))
    ds["input"] = (("sample", "time", "channel"), np.zeros((16, 6, 2)))
    path = report(ds, tmp_path / "out")
    assert path == tmp_path / "out" / "report.html"
    tags, text = _parse(path)
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert len(tags.images) == len(pngs) >= 7
    for src in tags.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert tags.external == []  # nothing to fetch: readable offline, no server
    assert {"Layers", "Anomaly score from hidden states", "Gate saturation", "Dead units",
            "Provenance", "Dataset"} <= set(tags.headings)  # fmt: skip
    for value in ds.attrs.values():
        assert str(value) in text
    assert "enc.l1" in text and "ROC AUC" in text
    assert re.search(r"is_anomaly=True", text) or "is_anomaly" in text


def test_report_without_groups_or_internals(tmp_path) -> None:
    ds = make_dataset(n_samples=5, internals=False, seed=32)
    tags, text = _parse(report(ds, tmp_path))
    assert "Gate saturation" not in tags.headings
    assert "Anomaly score from hidden states" not in tags.headings
    assert len(tags.images) == 3  # one heatmap per layer


def test_report_reads_a_lazy_dataset_and_a_reference_dataset(tmp_path) -> None:
    ds = make_dataset(n_samples=12, seed=33)
    ds = ds.assign_coords(is_anomaly=("sample", np.arange(12) >= 8))
    ds.to_netcdf(tmp_path / "a.nc")
    reference = make_dataset(n_samples=20, seed=34)
    with xr.open_dataset(tmp_path / "a.nc", chunks={"sample": 5}) as lazy:
        tags, text = _parse(report(lazy, tmp_path / "r", reference=reference, title="My run"))
    assert "<h1>My run</h1>" in text
    assert "a separate reference dataset" in text
