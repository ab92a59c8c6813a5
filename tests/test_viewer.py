"""The viewer's server side, without a browser: what each view computes, the app, the command."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import seqacts

pytest.importorskip("panel")
pytest.importorskip("holoviews")

from viewer_fixtures import labelled_recording  # noqa: E402

from seqacts.viewer.data import Explorer  # noqa: E402
from seqacts.viewer.serve import LOOPBACK, check_port  # noqa: E402


@pytest.fixture(scope="module")
def ds() -> xr.Dataset:
    return labelled_recording()


def test_windows_table_lists_every_sample_with_group_and_scores(ds: xr.Dataset) -> None:
    ex = Explorer(ds)
    table = ex.table
    assert ex.group == "anomaly" and ex.score == "reconstruction_error"
    assert sorted(table["sample"]) == list(ds["sample"].values)
    assert list(table["reconstruction_error"]) == sorted(ds["reconstruction_error"].values,
                                                          reverse=True)  # fmt: skip
    row = table.iloc[0]
    pos = int(np.flatnonzero(ds["sample"].values == row["sample"])[0])
    assert row["group"] == ds["anomaly"].values[pos]
    for i, layer in enumerate(ds["layer"].values):
        peak = float(np.nanmax(ds["step_distance"].values[pos, i]))
        assert row[f"max step_distance[{layer}]"] == peak
    assert Explorer(ds, group="is_anomaly", score="max step_distance[l1]").table[
        "max step_distance[l1]"].is_monotonic_decreasing  # fmt: skip


def test_window_panels_hold_the_recorded_values(ds: xr.Dataset) -> None:
    ex = Explorer(ds, var="forget_gate")
    view = ex.window(7)
    assert view.length == ds.sizes["time"]
    np.testing.assert_array_equal(view.input.values, ds["input"].values[7])
    np.testing.assert_array_equal(view.anomaly, ds["anomaly_mask"].values[7])
    np.testing.assert_array_equal(view.step_distance.values, ds["step_distance"].values[7])
    for i, layer in enumerate(ds["layer"].values):
        np.testing.assert_array_equal(view.states[str(layer)].values,
                                      ds["forget_gate"].values[7, i, 0].T)  # fmt: skip


def test_match_tiles_units_and_top_windows_are_the_functions_results(ds: xr.Dataset) -> None:
    ex = Explorer(ds)
    found = ex.match(7, "l0", 3, 5)
    expected = seqacts.match(ds, 7, "l0", slice(3, 5), top=12)
    xr.testing.assert_identical(found.drop_vars("tile"), expected)
    for r in range(found.sizes["rank"]):
        s, a = int(found["sample"][r]), int(found["start"][r])
        np.testing.assert_array_equal(found["tile"].values[r], ds["h"].values[s, 0, 0, a:a + 2].T)
    uv = ex.unit("l1", 2)
    xr.testing.assert_identical(uv.top, seqacts.top_windows(ds, "l1", 2, width=8, top=10))
    means = ds["h"].values[:, 1, 0, :, 2].astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(uv.by_group["mean"], means, rtol=1e-12)
    assert list(uv.by_group["group"]) == list(ds["anomaly"].values)
    forget = ds["forget_gate"].values[:, 1, 0, :, 2]
    row = uv.saturation.set_index("gate").loc["forget_gate"]
    assert row["left"] == (forget < 0.1).mean() and row["right"] == (forget > 0.9).mean()


def test_trajectories_are_projections_on_the_reference_groups_principal_axes(ds) -> None:
    ex = Explorer(ds)
    tr = ex.trajectories("l0")
    assert tr.reference == "anomaly == normal"
    h = ds["h"].values[:, 0, 0].astype(np.float64)  # (sample, time, unit)
    ref = h[ds["anomaly"].values == "normal"].reshape(-1, h.shape[-1])
    centered = ref - ref.mean(axis=0)
    _, sv, vt = np.linalg.svd(centered, full_matrices=False)
    for pos, line in zip(tr.samples, tr.lines, strict=True):
        expected = (h[pos] - ref.mean(axis=0)) @ vt[:2].T
        np.testing.assert_allclose(np.abs(line), np.abs(expected), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tr.explained, (sv[:2] ** 2) / (sv**2).sum(), rtol=1e-6)
    assert list(tr.groups) == list(ds["anomaly"].values[tr.samples])


def test_padded_samples_show_only_their_valid_steps() -> None:
    ds = labelled_recording(n_per_kind=3)
    length = ds["length"].values.copy()
    length[4] = 9
    h = ds["h"].values.copy()
    h[4, :, :, 9:] = np.nan
    ds = ds.assign(h=(ds["h"].dims, h)).assign_coords(length=(("sample", "layer"), length))
    ex = Explorer(ds)
    assert ex.window(4).states["l0"].sizes["time"] == 9
    tr = ex.trajectories("l1")
    assert len(tr.lines[4]) == 9 and np.isfinite(tr.lines[4]).all()


def test_the_app_draws_each_view_without_a_browser(ds: xr.Dataset) -> None:
    import panel as pn

    from seqacts.viewer.app import ViewerApp

    app = ViewerApp(Explorer(ds), title="test")
    first = app.ex.table["sample"].iloc[0]
    assert app.sample == first and "Window **sample" in app.status.object
    app.table.selection = [3]
    assert app.sample == app.ex.table["sample"].iloc[3]
    app.run_match("l0", 3, 5)
    text = app.matches[0].object
    found = seqacts.match(ds, app.sample, "l0", slice(3, 5), top=12)
    for r in range(found.sizes["rank"]):
        assert (f"| {r + 1} | {int(found['sample'][r])} | {int(found['start'][r])}-"
                f"{int(found['start'][r]) + 1} | {float(found['score'][r]):.3f} |") in text
    app.open_match(app.last_match, 0)
    assert app.sample == int(found["sample"][0])
    app._on_brush("l1", (2.6, 6.4))  # steps 3..6 brushed on layer l1
    assert app.steps.value == (3, 7) and app.layer.value == "l1"
    app._on_tap("l0", 4.8)
    top = seqacts.top_windows(ds, "l0", 5, width=8, top=10)
    assert f"| 1 | {int(top['sample'][0])} | {int(top['start'][0])}-" in app.unit[0].object
    app.run_match("l0", 0, ds.sizes["time"])  # nothing on throughout: said, not raised
    assert "no unit" in app.matches[0].object
    assert isinstance(app.trajectories[0], pn.pane.HoloViews)  # small: drawn at once


def test_a_large_recordings_trajectories_wait_for_the_button(ds, monkeypatch) -> None:
    import holoviews as hv
    import panel as pn

    from seqacts.viewer import app as app_module

    monkeypatch.setattr(app_module, "EAGER_BYTES", 0)
    app = app_module.ViewerApp(Explorer(ds), title="test")
    assert app.trajectories[0] is app.draw_button
    app.draw_button.clicks += 1
    assert isinstance(app.trajectories[0], pn.pane.HoloViews)
    app.layer.value = "l1"
    path = app.trajectories[0].object.get(0)  # the paths under the selected window's line
    title = hv.Store.lookup_options("bokeh", path, "plot").kwargs["title"]
    assert title.startswith("l1: h on PCs of anomaly == normal")


def test_explorer_mistakes_name_the_problem(ds: xr.Dataset) -> None:
    with pytest.raises(seqacts.MissingVariableError, match="no 'h'"):
        Explorer(ds.drop_vars("h"))
    with pytest.raises(seqacts.GroupError, match="labels: model_call, is_anomaly, anomaly"):
        Explorer(ds, group="kind")
    with pytest.raises(seqacts.OptionError, match="scores: reconstruction_error"):
        Explorer(ds, score="nope")
    with pytest.raises(seqacts.MissingVariableError, match="per-step variables: h, c"):
        Explorer(ds, var="h_n")


def run_view(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqacts.cli", "view", *args, "--no-browser"],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_bad_inputs_exit_2_in_one_line(tmp_path: Path, ds: xr.Dataset) -> None:
    (tmp_path / "junk.nc").write_bytes(b"not a netCDF file at all" * 10)
    ds.drop_vars([v for v in ds.data_vars if v != "input"]).to_netcdf(tmp_path / "noh.nc")
    ds.to_netcdf(tmp_path / "ok.nc")
    busy = socket.socket()
    busy.bind((LOOPBACK, 0))
    busy.listen()
    port = str(busy.getsockname()[1])
    try:
        cases = {
            "missing": ([str(tmp_path / "gone.nc")], "no such file"),
            "damaged": ([str(tmp_path / "junk.nc")], "netCDF"),
            "no h": ([str(tmp_path / "noh.nc")], "'h'"),
            "port in use": ([str(tmp_path / "ok.nc"), "--port", port], f"port {port}"),
            "bad group": ([str(tmp_path / "ok.nc"), "--group", "zz", "--port", "0"], "--group"),
        }
        for what, (args, message) in cases.items():
            done = run_view(*args)
            assert done.returncode == 2, (what, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], (what, done.stderr)
            assert lines[0].startswith("seqacts view: error:"), what
    finally:
        busy.close()


def test_serves_loopback_by_default_and_checks_the_port() -> None:
    from seqacts.cli import build_parser

    args = build_parser().parse_args(["view", "x.nc"])
    assert args.address == LOOPBACK and args.port == 5006 and not args.no_browser
    assert check_port(LOOPBACK, 0) > 0
    with pytest.raises(seqacts.SeqactsError, match="--port"):
        check_port(LOOPBACK, 70000)


def test_an_unfinished_file_is_shown_with_its_committed_prefix_on_loopback_only(tmp_path: Path) -> None:
    import torch

    model = torch.nn.LSTM(3, 4, batch_first=True)
    batches = [torch.randn(3, 5, 3) for _ in range(3)]

    def dies() -> object:
        yield from batches[:2]
        raise KeyboardInterrupt

    path = tmp_path / "part.nc"
    with pytest.raises(KeyboardInterrupt):
        seqacts.extract_to_netcdf(model, dies(), path, progress=False)
    proc = subprocess.Popen([sys.executable, "-m", "seqacts.cli", "view", str(path), "--port", "0",
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        note = proc.stderr.readline()
        served = proc.stdout.readline()
        port = int(served.rsplit("127.0.0.1:", 1)[1].split("/")[0])
        for _ in range(600):  # until the server listens
            with socket.socket() as sock:
                if sock.connect_ex((LOOPBACK, port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the server never listened on the loopback address")
        other = outward_address()
        if other is not None:  # the same port on the machine's network address is closed
            with socket.socket() as sock:
                assert sock.connect_ex((other, port)) != 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "note:" in note and "still being written" in note and "6 committed samples" in note
    assert "serving" in served and "(6 windows)" in served and "http://127.0.0.1:" in served


def outward_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_view_returns_the_page_for_a_notebook(ds: xr.Dataset) -> None:
    import panel as pn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        page = seqacts.view(ds)
    assert isinstance(page, pn.viewable.Viewable)


def test_a_file_being_written_is_shown_with_its_committed_batches(tmp_path: Path) -> None:
    import threading

    import torch

    model = torch.nn.LSTM(3, 4, batch_first=True)
    more = threading.Event()
    committed = threading.Event()

    def batches():
        yield torch.randn(3, 5, 3)
        yield torch.randn(3, 5, 3)
        committed.set()  # asked for the third: the first two are committed
        more.wait(120)
        yield torch.randn(3, 5, 3)

    path = tmp_path / "writing.nc"
    writer = threading.Thread(target=seqacts.extract_to_netcdf, args=(model, batches(), path),
                              kwargs={"progress": False})  # fmt: skip
    writer.start()
    try:
        assert committed.wait(120)
        proc = subprocess.Popen([sys.executable, "-m", "seqacts.cli", "view", str(path), "--port",
                                 "0", "--no-browser"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            note = proc.stderr.readline()
            served = proc.stdout.readline()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        more.set()
        writer.join(120)
    assert "note:" in note and "is being written by pid" in note and "6 committed" in note
    assert "(6 windows)" in served


def test_a_match_tile_click_opens_its_window_and_groups_keep_their_colour(ds) -> None:
    from seqacts.viewer.app import COLORS, ViewerApp

    app = ViewerApp(Explorer(ds), title="test")
    app.run_match("l0", 3, 5)
    grid = app.matches[2].object  # the tiles
    tile = grid.values()[1]
    tap = next(s for s in hv_streams(tile) if type(s).__name__ == "SingleTap")
    tap.event(x=0.0, y=0.0)
    assert app.sample == int(app.last_match["sample"][1])
    styled = app.table.style.to_html()
    names = sorted(set(ds["anomaly"].values))
    assert all(f"background-color: {COLORS[i]}" in styled for i in range(len(names)))


def hv_streams(element) -> list:
    import holoviews as hv

    return [s for s in hv.streams.Stream.registry.get(element, [])]
