"""The ``seqacts`` command, run as a user runs it: in subprocesses, from a project directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import seqacts
from seqacts.cli import main

MODEL_PY = """
from torch import nn


class Net(nn.Module):
    def __init__(self, batch_first=True):
        super().__init__()
        self.rnn = nn.GRU(3, 8, num_layers=2, batch_first=batch_first, bidirectional=True)
        self.out = nn.Linear(16, 1)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y)


def make():
    return Net()


def make_time_first():
    return Net(batch_first=False)


def other():
    return nn.Sequential(nn.LSTM(3, 5, batch_first=True))


NOT_CALLABLE = 3
"""


def _seqacts() -> list[str]:
    script = Path(sys.executable).with_name("seqacts")
    return [str(script)] if script.exists() else [sys.executable, "-m", "seqacts.cli"]


def _run_all(cwd: Path, *commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Run commands concurrently (each pays the torch import) and collect their results."""
    procs = [
        subprocess.Popen(
            _seqacts() + cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
        for cmd in commands
    ]
    results = []
    for proc, cmd in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return results


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "mymodel.py").write_text(MODEL_PY)
    sys.path.insert(0, str(root))
    try:
        import mymodel

        torch.manual_seed(0)
        torch.save(mymodel.make().state_dict(), root / "w.pt")
        torch.save(mymodel.make_time_first().state_dict(), root / "w_tf.pt")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("mymodel", None)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 7, 3)).astype(np.float32)
    np.save(root / "x.npy", x)
    np.save(root / "x_tf.npy", x.transpose(1, 0, 2).copy())
    np.save(root / "x4.npy", rng.normal(size=(20, 7, 4)).astype(np.float32))
    np.save(root / "flat.npy", x[0])
    torch.save({"input": torch.from_numpy(x), "labels": torch.zeros(20)}, root / "x.pt")
    times = np.datetime64("2024-01-01T00:00") + np.arange(7) * np.timedelta64(1, "h")
    xr.Dataset(
        {"input": (("time", "sample", "feature"), x.transpose(1, 0, 2))}, coords={"time": times}
    ).to_netcdf(root / "x.nc")
    return root


def _model(root: Path, factory: str = "make", weights: str = "w.pt") -> torch.nn.Module:
    sys.path.insert(0, str(root))
    try:
        import mymodel

        model = getattr(mymodel, factory)()
        model.load_state_dict(torch.load(root / weights, weights_only=True))
        return model.eval()
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("mymodel", None)


def test_extract_then_info_then_report(project: Path) -> None:
    (done,) = _run_all(
        project,
        ["extract", "mymodel:make", "--weights", "w.pt", "--input", "x.npy", "--out",
         "acts.nc", "--internals", "--batch-size", "6", "--layers", "rnn.l1"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote acts.nc: 20 samples" in done.stdout
    with xr.open_dataset(project / "acts.nc") as ds:
        assert list(ds["layer"].values) == ["rnn.l1"] and ds.sizes["sample"] == 20
        assert "update_gate" in ds
        x = torch.from_numpy(np.load(project / "x.npy"))
        expected = seqacts.extract(_model(project), x, layers="rnn.l1")
        np.testing.assert_allclose(ds["h"].values, expected["h"].values, rtol=1e-5, atol=1e-6)
    info, rep = _run_all(project, ["info", "acts.nc", "--summary"], ["report", "acts.nc",
                                                                       "--out", "rep"])  # fmt: skip
    assert info.returncode == 0, info.stderr
    for text in ("rnn.l1", "GRU", "sample 20", "update_gate", "model_class: mymodel.Net"):
        assert text in info.stdout
    assert rep.returncode == 0, rep.stderr
    assert (project / "rep" / "report.html").stat().st_size > 10_000


@pytest.fixture()
def in_project(project: Path, monkeypatch):
    """Run ``seqacts.cli.main`` in-process from the project directory (no torch re-import)."""
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield project
    sys.modules.pop("mymodel", None)


def test_extract_reads_pt_nc_and_time_first_inputs(in_project: Path) -> None:
    w = ["--weights", "w.pt"]
    assert main(["extract", "mymodel:make", *w, "--input", "x.pt", "--out", "pt.nc"]) == 0
    assert main(["extract", "mymodel:make", *w, "--input", "x.nc", "--out", "nc.nc"]) == 0
    assert main(["extract", "mymodel:make_time_first", "--weights", "w_tf.pt", "--input",
                 "x_tf.npy", "--time-first", "--batch-size", "8", "--out", "tf.nc"]) == 0  # fmt: skip
    with xr.open_dataset("pt.nc") as a, xr.open_dataset("nc.nc") as b:
        np.testing.assert_allclose(a["h"].values, b["h"].values)
        assert np.issubdtype(b["time"].dtype, np.datetime64)  # labels from the .nc input
    with xr.open_dataset("tf.nc") as c:
        x = torch.from_numpy(np.load("x_tf.npy"))
        expected = seqacts.extract(_model(in_project, "make_time_first", "w_tf.pt"), x)
        np.testing.assert_allclose(c["h"].values, expected["h"].values, rtol=1e-5, atol=1e-6)
    assert main(["extract", "mymodel:make", *w, "--input", "x.pt", "--out", "pt.nc"]) == 2


def test_labels_layouts_and_storage_options_from_the_shell(in_project: Path, capsys) -> None:
    """Labels of a .nc input and of --coords reach the file, info lists them, report uses them."""
    x = np.load("x.npy")
    labels = np.arange(20) % 4 == 0
    xr.Dataset(
        {"input": (("sample", "time", "feature"), x)},
        coords={
            "is_anomaly": ("sample", labels),
            "anomaly": ("sample", np.where(labels, "spike", "normal")),
        },
    ).to_netcdf("labelled.nc")
    pd.DataFrame(
        {"split": np.where(np.arange(20) < 10, "train", "test"), "score": np.arange(20.0)}
    ).to_csv("more.csv", index=False)
    np.save("sft.npy", x.transpose(0, 2, 1).copy())
    w = ["--weights", "w.pt"]
    assert (
        main(
            [
                "extract",
                "mymodel:make",
                *w,
                "--input",
                "labelled.nc",
                "--coords",
                "more.csv",
                "--out",
                "lab.nc",
                "--internals",
                "--pack",
                "int16",
                "--compression",
                "zstd",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "extract",
                "mymodel:make",
                *w,
                "--input",
                "sft.npy",
                "--layout",
                "sample,feature,time",
                "--out",
                "sft.nc",
            ]
        )
        == 0
    )
    capsys.readouterr()
    with seqacts.open_dataset("lab.nc") as ds, xr.open_dataset("sft.nc") as sft:
        for name in ("is_anomaly", "anomaly", "split", "score"):
            assert name in ds.coords and ds[name].dims == ("sample",)
        assert ds["is_anomaly"].dtype == bool and list(ds["is_anomaly"].values) == list(labels)
        assert list(ds["split"].values[:2]) == ["train", "train"]
        assert ds["update_gate"].encoding.get("dtype") == np.dtype("int16")  # --pack int16
        np.testing.assert_allclose(sft["h"].values, ds["h"].values, atol=1e-4)
    assert main(["info", "lab.nc"]) == 0
    out = capsys.readouterr().out
    assert "labels along sample" in out and "is_anomaly: bool, 2 values" in out
    assert "anomaly: str, 2 values: spike (5), normal (15)" in out or "anomaly: str" in out
    assert main(["report", "lab.nc", "--out", "rep", "--group", "anomaly"]) == 0
    assert (in_project / "rep" / "report.html").exists()


def test_info_and_report_read_shard_directories(in_project: Path, capsys) -> None:
    from seqacts.io.stream import stream
    from seqacts.options import Options

    x = torch.from_numpy(np.load("x.npy"))
    model = _model(in_project)
    opts = Options()
    Path("parts").mkdir(exist_ok=True)
    stream(model, [x[:10]], Path("parts/part-000000000000.nc"), opts, progress=False)
    stream(
        model, [x[10:]], Path("parts/part-000000000010.nc"), opts, progress=False, first_sample=10
    )
    assert main(["info", "parts"]) == 0
    assert "sample 20" in capsys.readouterr().out
    assert main(["report", "parts", "--out", "parts_report"]) == 0


def test_errors_in_a_terminal_are_one_line_with_status_2(project: Path) -> None:
    bad, debug = _run_all(
        project,
        ["extract", "mymodel:make", "--input", "x4.npy", "--out", "e.nc"],
        ["--debug", "extract", "mymodel", "--input", "x.npy", "--out", "e.nc"],
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == (
        "seqacts extract: error: --input: 4 features per step but the model's first recurrent "
        "layer expects input_size=3; input shape (20, 7, 4) read as (sample, time, feature) "
        "(use --layout or --time-first/--batch-first to change)"
    )
    assert "Traceback" in debug.stderr and debug.returncode != 0


def test_demo_quick_writes_dataset_and_report(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--quick", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "ROC AUC" in out and "report:" in out
    assert (tmp_path / "out" / "report.html").exists()
    with xr.open_dataset(tmp_path / "out" / "acts.nc") as ds:
        assert ds["is_anomaly"].dtype == bool and "forget_gate" in ds
        assert {"grad_h", "grad_c", "attribution"} <= set(ds.data_vars)
        assert "anomaly_channel" in ds.coords
    assert "pointing game" in out
    assert (tmp_path / "out" / "explain_spike.png").exists()
