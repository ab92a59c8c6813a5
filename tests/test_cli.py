"""The ``seqacts`` command, run as a user runs it: in subprocesses, from a project directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
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


ERRORS = [
    (["extract", "mymodel", "--input", "x.npy", "--out", "e.nc"], "package.module:factory"),
    (["extract", "nomodule:make", "--input", "x.npy", "--out", "e.nc"], "cannot import"),
    (["extract", "mymodel:nope", "--input", "x.npy", "--out", "e.nc"], "no attribute 'nope'"),
    (["extract", "mymodel:NOT_CALLABLE", "--input", "x.npy", "--out", "e.nc"], "not callable"),
    (["extract", "mymodel:other", "--weights", "w.pt", "--input", "x.npy", "--out", "e.nc"],
     "does not fit the model"),
    (["extract", "mymodel:make", "--weights", "x.npy", "--input", "x.npy", "--out", "e.nc"],
     "weights_only=True"),
    (["extract", "mymodel:make", "--weights", "gone.pt", "--input", "x.npy", "--out", "e.nc"],
     "no such file 'gone.pt'"),
    (["extract", "mymodel:make", "--input", "x4.npy", "--out", "e.nc"], "expects input_size=3"),
    (["extract", "mymodel:make", "--input", "flat.npy", "--out", "e.nc"], "3 axes"),
    (["extract", "mymodel:make", "--input", "x.npy", "--time-first", "--out", "e.nc"],
     "pass --batch-first"),
    (["extract", "mymodel:make", "--input", "mymodel.py", "--out", "e.nc"], ".npy, .pt or .nc"),
    (["extract", "mymodel:make", "--input", "x.npy", "--batch-size", "0", "--out", "e.nc"],
     "positive integer"),
    (["info", "missing.nc"], "no such file 'missing.nc'"),
    (["info", "x.nc"], "not a seqacts dataset"),
    (["report", "x.npy", "--out", "r"], "cannot read x.npy"),
]  # fmt: skip


@pytest.mark.parametrize("cmd, expected", ERRORS, ids=[e[1] for e in ERRORS])
def test_errors_name_the_problem_and_the_fix(in_project: Path, capsys, cmd, expected) -> None:
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (in_project / "e.nc").exists()


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
